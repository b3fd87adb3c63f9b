#!/usr/bin/env python3
"""`posternctl rule ...` (policy/ctl_rule.c) on a fresh store: create from
options and from JSON, the stable error tokens and exit codes, edit with
LEVEL_TOO_LOW and --move-level (spec case 47), value splitting (case 45),
move, enable/disable, list filters with an expired rule under both
"expired" and "inactive" (case 27), delete variants, export/import round
trip, and the organisation time zone. Needs only the posternctl binary."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

SRC = os.environ.get("POSTERN_SRC") or os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))
CTL = os.environ.get("POSTERNCTL_BIN") or os.path.join(SRC, "build", "posternctl")


class RuleCliTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="postern-rule-cli-")
        self.store = os.path.join(self.dir, "policy")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def ctl(self, *args, code=0, stdin=None):
        r = subprocess.run([CTL, "-d", self.store] + list(args), input=stdin,
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, code, "%s: %s%s" % (args, r.stdout, r.stderr))
        return r

    def names(self, *filters):
        doc = json.loads(self.ctl("rule", "list", "--json", *filters).stdout)
        return ["%d.%d:%s" % (r["level"], r["position"], r["name"]) for r in doc["rules"]]

    def test_create_errors_and_tokens(self):
        r = self.ctl("rule", "create", "--name", "Block offers", "--if",
                     "subject contains offer, deal", "--action", "spam")
        self.assertIn('created rule 1 "Block offers" (level 2, position 1)', r.stdout)
        r = self.ctl("rule", "create", "--name", "BLOCK OFFERS", "--if", "subject is x",
                     "--action", "spam", code=2)
        self.assertEqual(r.stderr, "posternctl: NAME_EXISTS: Name already exists\n")
        r = self.ctl("rule", "create", "--name", "re", "--if", "subject matches regex (abc",
                     "--action", "spam", code=2)
        self.assertRegex(r.stderr, r"^posternctl: BAD_REGEX: .*offset 4")
        for opts, token in (
                (["--if", "sender_ip contains 10.", "--action", "spam"], "BAD_OPERATOR"),
                (["--if", "sender_ip is 999.1.1.1", "--action", "spam"], "BAD_VALUE"),
                (["--if", "subject contains  , ", "--action", "spam"], "EMPTY_VALUES"),
                (["--if", "subject is x", "--action", "reject", "--action", "banner=b"],
                 "CONTRADICTORY"),
                (["--if", "subject is x", "--action", "spam", "--level", "1"],
                 "LEVEL_TOO_LOW"),
                (["--if", "language is xx", "--action", "spam"], "BAD_VALUE"),
                (["--if", "country is UK", "--action", "spam"], "BAD_VALUE"),
                (["--if", "subject is x", "--action", "spam", "--mode", "selected"], "NOBODY"),
                (["--no-conditions", "--action", "spam", "--expiry", "2020-01-01"],
                 "EXPIRY_PAST"),
                (["--no-conditions", "--action", "drop"], "CONFIRM")):
            r = self.ctl("rule", "create", "--name", "bad", *opts, code=2)
            self.assertTrue(r.stderr.startswith("posternctl: %s: " % token), (opts, r.stderr))
        self.ctl("rule", "create", "--name", "drop all", "--no-conditions", "--action", "drop",
                 "--confirm", "--inactive")
        self.assertEqual(self.names(), ["1.1:drop all", "2.1:Block offers"])
        r = self.ctl("rule", "show", "nosuch", code=3)
        self.assertTrue(r.stderr.startswith("posternctl: NOT_FOUND: "))
        self.ctl("rule", "enable", "42", code=3)

    def test_delimiter_scope_and_json(self):
        # spec case 45, and the apply-to mode default of spec 5.4
        self.ctl("rule", "create", "--name", "c45", "--if", "to_cc is a@x.com, b@y.com ,,c@z.com",
                 "--action", "spam", "--groups", "sales", "--exclude-users", "bob@corp.example")
        shown = json.loads(self.ctl("rule", "show", "c45", "--json").stdout)
        self.assertEqual(shown["conditions"][0]["values"], ["a@x.com", "b@y.com", "c@z.com"])
        self.assertEqual(shown["apply_to"]["mode"], "selected")
        self.ctl("rule", "create", "--name", "semi", "--delimiter", ";", "--if",
                 "subject contains a,b; c", "--if", "header:X-Spam-Flag is YES", "--any",
                 "--action", "xheader=X-T: 1", "--action", "subject=[ext]")
        # a value that spells an operator of another kind stays a value
        self.ctl("rule", "create", "--name", "truth", "--create-only", "--if",
                 "subject is true", "--if", "bulk is true", "--action", "spam")
        shown = json.loads(self.ctl("rule", "show", "truth", "--json").stdout)
        self.assertEqual([(c["op"], c["values"]) for c in shown["conditions"]],
                         [("is", ["true"]), ("is_true", [])])
        self.assertEqual(shown["status"], "inactive")
        self.ctl("rule", "delete", "truth")
        # operators of three and four words, values with spaces after them
        self.ctl("rule", "create", "--name", "words", "--create-only",
                 "--if", "sender_domain is subdomain of example.com",
                 "--if", "sender_domain is not subdomain of a.example,b.example",
                 "--if", "subject is not hello world", "--if", "header:X-Foo does not exist",
                 "--action", "spam")
        shown = json.loads(self.ctl("rule", "show", "words", "--json").stdout)
        self.assertEqual([(c["op"], c["values"]) for c in shown["conditions"]],
                         [("is_subdomain_of", ["example.com"]),
                          ("not_subdomain_of", ["a.example", "b.example"]),
                          ("is_not", ["hello world"]), ("not_exists", [])])
        self.ctl("rule", "delete", "words")
        # rule test supplies clamd's verdict with --malware
        self.ctl("rule", "create", "--name", "mw", "--if", "malware is true",
                 "--action", "quarantine")
        eml = os.path.join(self.dir, "m.eml")
        with open(eml, "w") as f:
            f.write("From: a@b.example\r\nSubject: x\r\n\r\nhi\r\n")
        base = ["rule", "test", "--eml", eml, "--from", "a@b.example", "--rcpt", "u@example.com"]
        self.assertIn("disposition: inbox", self.ctl(*base).stdout)
        self.assertIn("disposition: quarantine",
                      self.ctl(*base, "--malware", "infected:Eicar").stdout)
        self.assertIn("disposition: inbox", self.ctl(*base, "--malware", "clean").stdout)
        self.ctl(*base, "--malware", "maybe", code=2)
        self.ctl("rule", "delete", "mw")
        shown = json.loads(self.ctl("rule", "show", "semi", "--json").stdout)
        self.assertEqual(shown["conditions"][0]["values"], ["a,b", "c"])
        self.assertEqual(shown["conditions"][1]["header"], "X-Spam-Flag")
        self.assertEqual(shown["match"], "any")
        self.assertEqual(shown["actions"]["xheaders"], [{"name": "X-T", "value": "1"}])
        self.assertEqual(shown["apply_to"]["mode"], "all")
        doc = {"name": "from json", "condition_type": "none",
               "actions": {"disposition": "allow", "forward": "ext@partner.example"}}
        self.ctl("rule", "create", "--json", "-", stdin=json.dumps(doc))
        self.assertEqual(self.names(), ["2.1:c45", "2.2:semi", "3.1:from json"])

    def test_shadowing_warning(self):
        # spec 1.2.3: an active rule without conditions shadows later rules
        self.ctl("rule", "create", "--name", "a", "--if", "subject is a", "--action", "spam")
        r = self.ctl("rule", "create", "--name", "tag all", "--no-conditions",
                     "--action", "xheader=X-A: 1")
        self.assertIn("shadows 1 later rule\n", r.stderr)
        r = self.ctl("rule", "create", "--name", "b", "--if", "subject is b", "--action", "spam")
        self.assertIn('"tag all" has no conditions and comes first', r.stderr)
        self.ctl("rule", "disable", "tag all")
        r = self.ctl("rule", "create", "--name", "c", "--if", "subject is c", "--action", "spam")
        self.assertEqual(r.stderr, "")

    def test_edit_move_enable(self):
        for name, cond in (("ip", "sender_ip in_cidr 198.51.100.0/24"), ("a", "subject is a"),
                           ("b", "subject is b"), ("c", "subject is c")):
            self.ctl("rule", "create", "--name", name, "--if", cond, "--action", "spam")
        self.assertEqual(self.names(), ["1.1:ip", "2.1:a", "2.2:b", "2.3:c"])
        # case 47
        r = self.ctl("rule", "edit", "ip", "--if", "sender_ip in_cidr 198.51.100.0/24",
                     "--if", "subject contains s", code=2)
        self.assertTrue(r.stderr.startswith("posternctl: LEVEL_TOO_LOW: "))
        self.ctl("rule", "edit", "ip", "--if", "sender_ip in_cidr 198.51.100.0/24",
                 "--if", "subject contains s", "--move-level")
        self.assertEqual(self.names(), ["2.1:a", "2.2:b", "2.3:c", "2.4:ip"])
        self.ctl("rule", "move", "ip", "top")
        self.ctl("rule", "move", "a", "bottom")
        self.ctl("rule", "move", "c", "up")
        self.ctl("rule", "move", "ip", "down")
        self.assertEqual(self.names(), ["2.1:c", "2.2:ip", "2.3:b", "2.4:a"])
        self.ctl("rule", "move", "a", "1")
        self.assertEqual(self.names(), ["2.1:a", "2.2:c", "2.3:ip", "2.4:b"])
        self.ctl("rule", "move", "a", "sideways", code=2)
        # an edit replaces only what it names
        self.ctl("rule", "edit", "b", "--name", "Bee", "--description", "d")
        shown = json.loads(self.ctl("rule", "show", "bee", "--json").stdout)
        self.assertEqual((shown["description"], shown["conditions"][0]["values"]), ("d", ["b"]))
        self.ctl("rule", "disable", "Bee")
        self.assertEqual(self.names("--status", "inactive"), ["2.4:Bee"])
        self.ctl("rule", "enable", "Bee")
        self.assertEqual(self.names("--status", "inactive"), [])

    def test_expired_listing_delete_export_import(self):
        self.ctl("rule", "tz", "+05:30")
        self.assertEqual(self.ctl("rule", "tz").stdout, "+05:30\n")
        doc = {"rules": [
            {"name": "exp", "expiry": "2024-10-01", "condition_type": "none",
             "actions": {"xheaders": [{"name": "X-T", "value": "1"}]}},
            {"name": "off", "status": "inactive", "condition_type": "none",
             "actions": {"disposition": "reject"}},
            {"name": "Offers", "conditions": [{"param": "subject", "op": "contains",
                                               "values": ["offer"]}],
             "actions": {"disposition": "spam", "banner": "careful"}}]}
        r = self.ctl("rule", "import", "-", stdin=json.dumps(doc))
        self.assertEqual(r.stdout, "imported 3 rules\n")
        # case 27: under both "expired" and "inactive"
        self.assertEqual(self.names("--status", "expired"), ["1.1:exp"])
        self.assertEqual(self.names("--status", "inactive"), ["1.1:exp", "1.2:off"])
        self.assertEqual(self.names("--status", "active"), ["2.1:Offers"])
        self.assertEqual(self.names("--action", "banner"), ["2.1:Offers"])
        self.assertEqual(self.names("--name-contains", "OFF"), ["1.2:off", "2.1:Offers"])
        self.assertIn("expired", self.ctl("rule", "list").stdout)
        exported = self.ctl("rule", "export").stdout
        # delete: all or nothing, then the filtered variants
        self.ctl("rule", "delete", "off", "nosuch", code=3)
        self.assertEqual(len(self.names()), 3)
        self.ctl("rule", "delete", "--filter", code=2)
        self.assertEqual(self.ctl("rule", "delete", "--expired").stdout, "deleted 1 rule\n")
        self.assertEqual(self.ctl("rule", "delete", "--filter", "--action", "reject").stdout,
                         "deleted 1 rule\n")
        self.assertEqual(self.names(), ["2.1:Offers"])
        self.ctl("rule", "delete", "--all")
        self.assertEqual(self.names(), [])
        # the export imports back to the same rules
        self.ctl("rule", "import", "--replace", "-", stdin=exported)
        again = json.loads(self.ctl("rule", "export").stdout)
        first = json.loads(exported)
        for d in (first, again):
            for r in d["rules"]:
                r.pop("id")
                r.pop("modified")
        self.assertEqual(first, again)
        r = self.ctl("rule", "import", "-", stdin=exported, code=2)
        self.assertTrue(r.stderr.startswith("posternctl: NAME_EXISTS: rules[0]"), r.stderr)


if __name__ == "__main__":
    if not os.path.exists(CTL):
        print("posternctl not built: %s" % CTL)
        sys.exit(1)
    prog = unittest.main(verbosity=2, exit=False)
    res = prog.result
    failed = len(res.failures) + len(res.errors)
    print("%d passed, %d failed" % (res.testsRun - failed, failed))
    sys.exit(0 if res.wasSuccessful() else 1)
