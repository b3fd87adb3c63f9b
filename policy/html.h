/*
 * policy/html.h: the HTML analyzer of the incoming rules (spec 1.4 #20,
 * #23, #24, #32, #33, #36; 2.3). Pure, no I/O: the caller hands decoded
 * UTF-8 HTML (a body part), html_analyze() answers its facts.
 *
 * Two passes, and each boolean is the OR of both:
 * 1. libxml2's HTML parser (RECOVER, NOERROR, NOWARNING, NONET, COMPACT,
 *    IGNORE_ENC: it never fetches anything and never prints), its SAX
 *    events (no tree is built: half the cost) giving the booleans, the
 *    URLs, and the text for the content condition (script and style skipped,
 *    entities decoded by the parser, a space at block boundaries).
 * 2. A raw-markup scan of the same bytes with HTML5's tokenising rules for
 *    tags, attributes and comments ("<!-->" is an empty comment, "--!>"
 *    ends one, an unclosed comment runs to the end), attribute values
 *    entity-decoded (numeric with any number of digits, with or without
 *    ';', and the named entities HTML5 added such as &colon; and &Tab;).
 *    Bookworm's libxml2 2.9 predates HTML5 tokenising; this pass catches
 *    what a browser would see and the legacy parser would not. Its false
 *    positives are accepted (spec 2.3).
 *
 * The flags:
 * - has_javascript: a script element; any attribute whose name starts with
 *   "on" (onload, onerror, ...); a javascript:, vbscript: or livescript:
 *   URL in a URL attribute (href, src, action, formaction, data, background,
 *   poster, xlink:href, ...) or a meta refresh, after entity decoding and
 *   with every byte <= 0x20 removed ("java&#x09;script:", "JAVASCRIPT:");
 *   a script element, script URL or on* handler inside an iframe srcdoc.
 * - has_frames: a frame, frameset, iframe, object, embed, applet or form
 *   element.
 * - has_web_bugs: a remote (http:, https: or scheme-relative //) img with
 *   width or height <= 2 (attribute, or inline CSS in px or unitless),
 *   or hidden (display:none, visibility:hidden, opacity:0, the hidden
 *   attribute, or inside an element hidden so); an element with a remote
 *   CSS background image (background attribute or inline style url()) and
 *   width or height <= 2. cid: and data: images never count.
 *
 * The URLs (not normalised, entity-decoded, duplicates removed, in document
 * order): a/area[href], form[action], button/input[formaction],
 * img/iframe/frame/embed[src], the background attribute, CSS url() in
 * style attributes and style elements.
 */
#ifndef POSTERN_POLICY_HTML_H
#define POSTERN_POLICY_HTML_H

#include <stdbool.h>
#include <stddef.h>

struct html_limits {
	size_t input_max;           /* bytes of HTML read (4 MiB) */
	size_t text_max;            /* bytes of text extracted (1 MiB) */
	size_t urls_max;            /* URLs collected (1000; at most
	                               HTML_URLS_MAX) */
};
#define HTML_LIMITS_DEFAULT { (size_t)4 << 20, (size_t)1 << 20, 1000 }
#define HTML_URLS_MAX 65536

struct html_facts {
	bool has_javascript;
	bool has_frames;
	bool has_web_bugs;
	bool parse_failed;          /* libxml2 could not run, or was not given
	                               the input because an element holds more
	                               than 100 attributes (its duplicate check
	                               is quadratic): text is empty, the flags
	                               and URLs come from the raw scan */
	bool input_cut;             /* more than input_max bytes */
	bool text_cut;
	bool urls_cut;
	char *text;                 /* UTF-8, NUL-terminated, not normalised */
	size_t text_len;
	char **urls;
	size_t n_urls;
};

/* Analyzes html[0..len). lim NULL: the defaults; a zero field: its
 * default. Returns 0 or -ENOMEM (then out holds nothing to free). Never
 * fails on malformed input. out must be released with html_facts_free().
 * Thread-safe (libxml2 is initialised once; its error output is silenced
 * for the calling thread). */
int html_analyze(const char *html, size_t len, const struct html_limits *lim,
		 struct html_facts *out);
void html_facts_free(struct html_facts *f);

#endif
