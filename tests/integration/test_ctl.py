#!/usr/bin/env python3
"""posternctl (policy/posternctl.c), the real binary on a fresh store in a
temporary directory, end to end: user set/show/list/delete, where each
effective flag comes from (user, domain, org, built-in default) as
defaults are set and removed, groups and shared mailboxes with members,
`explain USER SERVICE` verdicts and exit codes, the JSON export/import
round trip, an import with one bad record among many leaving the store
unchanged (one transaction), and the documented errors and exit codes
(0 ok/allow, 1 deny, 2 usage/bad setting/malformed address, 3 unknown
user/group/domain, 4 store error). Needs only the posternctl binary."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

CTL = harness.POSTERNCTL_BIN

SERVICES = ("imap", "pop", "activesync", "incoming", "outgoing", "spamcheck")
EXIT_OK, EXIT_DENY, EXIT_USAGE, EXIT_UNKNOWN, EXIT_STORE = 0, 1, 2, 3, 4


class CtlTest(unittest.TestCase):
    def setUp(self):
        if not os.path.exists(CTL):
            self.skipTest("posternctl not built: %s" % CTL)
        self.dir = tempfile.mkdtemp(prefix="postern-ctl-")
        self.store = os.path.join(self.dir, "policy")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers

    def ctl(self, *args, code=0, stdin=None, store=None):
        r = subprocess.run([CTL, "-d", store or self.store] + list(args), input=stdin,
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, code, "posternctl %s: exit %d\n%s%s" % (
            " ".join(args), r.returncode, r.stdout, r.stderr))
        if code not in (EXIT_OK, EXIT_DENY):
            # every error is one "posternctl: ..." line on stderr, nothing on stdout
            self.assertRegex(r.stderr, r"(?m)^posternctl: \S")
        return r

    def show(self, user):
        """user show parsed: {service: (value, source)}, plus 'message',
        'groups'."""
        out = self.ctl("user", "show", user).stdout
        res = {}
        for s in SERVICES:
            m = re.search(r"^%s\s+(on|off|hold)\s+\((\w+)\)$" % s, out, re.M)
            self.assertIsNotNone(m, "no line for %s in:\n%s" % (s, out))
            res[s] = (m.group(1), m.group(2))
        m = re.search(r"^message: (.*)$", out, re.M)
        res["message"] = m.group(1)
        m = re.search(r"^groups:(.*)$", out, re.M)
        res["groups"] = m.group(1).split()
        return res

    def explain(self, user, service, code):
        out = self.ctl("explain", user, service, code=code).stdout
        return dict(re.findall(r"^(\w+): (.*)$", out, re.M))

    def export(self, store=None):
        return json.loads(self.ctl("export", store=store).stdout)

    def write_json(self, name, doc):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            if isinstance(doc, str):
                f.write(doc)
            else:
                json.dump(doc, f)
        return path

    def generation(self, store=None):
        return int(self.ctl("generation", store=store).stdout)

    # -- tests

    def test_user_set_show_list_delete(self):
        self.ctl("user", "set", "  Alice@Example.COM ", "imap=off", "incoming=hold",
                 "message=Ask the help desk", "backend=east-1")
        self.ctl("user", "set", "bob@example.com", "pop=off")
        self.ctl("user", "set", "carol@other.example", "outgoing=off")
        sh = self.show("alice@example.com")
        self.assertEqual(sh["imap"], ("off", "user"))
        self.assertEqual(sh["incoming"], ("hold", "user"))
        self.assertEqual(sh["pop"], ("on", "default"))
        self.assertEqual(sh["message"], '"Ask the help desk" (user)')
        self.assertIn("backend: east-1 (user)", self.ctl("user", "show",
                                                          "alice@example.com").stdout)
        # a second set changes only what it names
        self.ctl("user", "set", "alice@example.com", "pop=off", "backend=")
        sh = self.show("alice@example.com")
        self.assertEqual(sh["imap"], ("off", "user"))
        self.assertEqual(sh["pop"], ("off", "user"))
        self.assertIn("backend: (default)", self.ctl("user", "show",
                                                      "alice@example.com").stdout)
        # inherit unsets
        self.ctl("user", "set", "alice@example.com", "imap=inherit", "message=")
        sh = self.show("alice@example.com")
        self.assertEqual(sh["imap"], ("on", "default"))
        self.assertEqual(sh["message"], "(none)")

        lines = self.ctl("user", "list").stdout.splitlines()
        self.assertEqual([l.split()[0] for l in lines],
                         ["alice@example.com", "bob@example.com", "carol@other.example"])
        self.assertIn("pop=off", lines[0])
        self.assertIn("incoming=hold", lines[0])
        self.assertNotIn("imap=", lines[0])
        lines = self.ctl("user", "list", "--domain", "other.example").stdout.splitlines()
        self.assertEqual([l.split()[0] for l in lines], ["carol@other.example"])
        lines = self.ctl("user", "list", "--prefix", "bo").stdout.splitlines()
        self.assertEqual([l.split()[0] for l in lines], ["bob@example.com"])
        doc = json.loads(self.ctl("user", "list", "--json").stdout)
        self.assertEqual(sorted(doc["users"]), ["alice@example.com", "bob@example.com",
                                                "carol@other.example"])
        self.assertEqual(doc["users"]["bob@example.com"], {"pop": False})

        gen = self.generation()
        self.ctl("user", "delete", "BOB@example.com")
        self.assertGreater(self.generation(), gen)
        r = self.ctl("user", "show", "bob@example.com", code=EXIT_UNKNOWN)
        self.assertIn("no such user: bob@example.com", r.stderr)
        r = self.ctl("user", "delete", "bob@example.com", code=EXIT_UNKNOWN)
        self.assertIn("bob@example.com", r.stderr)
        self.assertNotIn("bob@", self.ctl("user", "list").stdout)

    def test_inheritance_user_domain_org_default(self):
        u = "dave@example.com"
        self.ctl("user", "set", u, "imap=on")
        self.assertEqual(self.show(u)["pop"], ("on", "default"))
        self.ctl("org", "set", "pop=off", "spamcheck=off", "message=Org says no")
        sh = self.show(u)
        self.assertEqual(sh["pop"], ("off", "org"))
        self.assertEqual(sh["spamcheck"], ("off", "org"))
        self.assertEqual(sh["imap"], ("on", "user"))
        self.assertEqual(sh["message"], '"Org says no" (org)')
        self.ctl("domain", "set", "EXAMPLE.com", "pop=on", "imap=off",
                 "message=Domain says no")
        sh = self.show(u)
        self.assertEqual(sh["pop"], ("on", "domain"))
        self.assertEqual(sh["imap"], ("on", "user"))       # the user's own wins
        self.assertEqual(sh["spamcheck"], ("off", "org"))  # domain leaves it unset
        self.assertEqual(sh["message"], '"Domain says no" (domain)')
        # another domain's users do not see example.com's defaults
        self.ctl("user", "set", "erin@else.example", "outgoing=on")
        self.assertEqual(self.show("erin@else.example")["pop"], ("off", "org"))
        self.assertEqual(self.show("erin@else.example")["imap"], ("on", "default"))

        out = self.ctl("domain", "show", "example.com").stdout
        self.assertRegex(out, r"(?m)^pop\s+on$")
        self.assertRegex(out, r"(?m)^imap\s+off$")
        self.assertRegex(out, r"(?m)^spamcheck\s+inherit$")
        self.assertRegex(self.ctl("domain", "list").stdout,
                         r"(?m)^example\.com imap=off pop=on message=\"Domain says no\"$")
        out = self.ctl("org", "show").stdout
        self.assertRegex(out, r"(?m)^pop\s+off$")
        self.assertRegex(out, r"(?m)^imap\s+inherit$")

        self.ctl("user", "set", u, "imap=inherit")
        self.assertEqual(self.show(u)["imap"], ("off", "domain"))
        self.ctl("domain", "delete", "example.com")
        self.ctl("domain", "show", "example.com", code=EXIT_UNKNOWN)
        self.ctl("domain", "delete", "example.com", code=EXIT_UNKNOWN)
        sh = self.show(u)
        self.assertEqual(sh["imap"], ("on", "default"))
        self.assertEqual(sh["pop"], ("off", "org"))
        self.ctl("org", "reset")
        sh = self.show(u)
        for s in SERVICES:
            self.assertEqual(sh[s], ("on", "default"), s)
        self.assertEqual(sh["message"], "(none)")
        self.assertRegex(self.ctl("org", "show").stdout, r"(?m)^pop\s+inherit$")

    def test_groups_and_members(self):
        self.ctl("user", "set", "alice@example.com", "imap=on")
        self.ctl("group", "create", "Sales", "--description", "Sales team")
        self.ctl("group", "create", "support@example.com", "--shared")
        r = self.ctl("group", "create", "sales", code=EXIT_USAGE)
        self.assertIn("already exists", r.stderr)
        self.ctl("group", "create", "not an address", "--shared", code=EXIT_USAGE)
        self.ctl("group", "create", "bad/name", code=EXIT_USAGE)
        self.ctl("group", "add", "sales", "alice@example.com", "Bob@Example.com")
        self.ctl("group", "add", "support@example.com", "alice@example.com")
        lines = self.ctl("group", "list").stdout.splitlines()
        self.assertEqual(lines, ['sales\tgroup\t2 members\t"Sales team"',
                                 "support@example.com\tshared\t1 member"])
        self.assertEqual(self.ctl("group", "members", "sales").stdout.split(),
                         ["alice@example.com", "bob@example.com"])
        self.assertEqual(self.ctl("user", "groups", "alice@example.com").stdout.split(),
                         ["sales", "support@example.com"])
        self.assertEqual(self.show("alice@example.com")["groups"],
                         ["sales", "support@example.com"])
        # a malformed member anywhere in the list: nothing changes
        r = self.ctl("group", "add", "sales", "carol@example.com", "not-an-address",
                     code=EXIT_USAGE)
        self.assertIn("not-an-address", r.stderr)
        self.assertEqual(self.ctl("group", "members", "sales").stdout.split(),
                         ["alice@example.com", "bob@example.com"])
        r = self.ctl("group", "remove", "sales", "carol@example.com", code=EXIT_UNKNOWN)
        self.assertIn("not a member", r.stderr)
        self.ctl("group", "add", "nosuch", "alice@example.com", code=EXIT_UNKNOWN)
        self.ctl("group", "members", "nosuch", code=EXIT_UNKNOWN)
        self.ctl("group", "remove", "sales", "bob@example.com")
        self.assertEqual(self.ctl("group", "members", "sales").stdout.split(),
                         ["alice@example.com"])
        # deleting a user takes it out of every group
        self.ctl("user", "delete", "alice@example.com")
        self.assertEqual(self.ctl("group", "members", "sales").stdout.split(), [])
        self.assertEqual(self.ctl("group", "members", "support@example.com").stdout.split(),
                         [])
        self.ctl("group", "delete", "sales")
        self.ctl("group", "delete", "sales", code=EXIT_UNKNOWN)
        self.assertEqual(self.ctl("group", "list").stdout.splitlines(),
                         ["support@example.com\tshared\t0 members"])

    def test_explain_verdicts_and_exit_codes(self):
        self.ctl("org", "set", "activesync=off")
        self.ctl("domain", "set", "example.com", "pop=off", "message=No POP here")
        self.ctl("user", "set", "alice@example.com", "imap=off", "message=Alice: no IMAP")
        ex = self.explain("alice@example.com", "imap", EXIT_DENY)
        self.assertEqual((ex["verdict"], ex["reason"], ex["source"], ex["message"]),
                         ("deny", "imap-disabled", "user", "Alice: no IMAP"))
        ex = self.explain("alice@example.com", "pop3", EXIT_DENY)   # alias
        self.assertEqual((ex["service"], ex["verdict"], ex["source"]), ("pop", "deny", "domain"))
        ex = self.explain("bob@example.com", "pop", EXIT_DENY)       # no user record
        self.assertEqual((ex["verdict"], ex["reason"], ex["source"], ex["message"]),
                         ("deny", "pop-disabled", "domain", "No POP here"))
        ex = self.explain("bob@example.com", "eas", EXIT_DENY)
        self.assertEqual((ex["service"], ex["source"]), ("activesync", "org"))
        ex = self.explain("bob@example.com", "imap", EXIT_OK)
        self.assertEqual((ex["verdict"], ex["source"]), ("allow", "default"))
        ex = self.explain("Alice@EXAMPLE.com", "outgoing", EXIT_OK)
        self.assertEqual(ex["user"], "alice@example.com")
        self.assertEqual(int(ex["generation"]), self.generation())
        r = self.ctl("explain", "alice@example.com", "smtp", code=EXIT_USAGE)
        self.assertIn("unknown service 'smtp'", r.stderr)
        self.ctl("explain", "no-at-sign", "imap", code=EXIT_USAGE)
        self.ctl("explain", "alice@example.com", code=EXIT_USAGE)

    def test_export_import_round_trip(self):
        self.ctl("org", "set", "spamcheck=off", "message=org text")
        self.ctl("domain", "set", "example.com", "pop=off", "backend=pool-b")
        self.ctl("domain", "set", "other.example", "incoming=hold")
        for i in range(50):
            self.ctl("user", "set", "user%02d@example.com" % i,
                     "imap=%s" % ("off" if i % 3 == 0 else "on"),
                     *(["message=user %d \"quoted\" \\ text" % i] if i % 5 == 0 else []))
        self.ctl("user", "set", "holder@other.example", "incoming=hold", "outgoing=off")
        self.ctl("group", "create", "sales", "--description", "Sales, Inc.")
        self.ctl("group", "add", "sales", "user01@example.com", "user02@example.com")
        self.ctl("group", "create", "help@example.com", "--shared")
        self.ctl("group", "add", "help@example.com", "user03@example.com")
        doc = self.export()
        self.assertEqual(doc["version"], 1)
        self.assertEqual(len(doc["users"]), 51)
        path = self.ctl("export", os.path.join(self.dir, "exp.json")) and \
            os.path.join(self.dir, "exp.json")
        with open(path) as f:
            self.assertEqual(json.load(f), doc)

        other = os.path.join(self.dir, "other")
        r = self.ctl("import", path, store=other)
        self.assertIn("imported 51 users, 2 domains, 2 groups (3 memberships), org defaults",
                      r.stdout)
        doc2 = self.export(store=other)
        doc.pop("generation")
        doc2.pop("generation")
        self.assertEqual(doc2, doc)
        # effective values agree too
        for u in ("user00@example.com", "user05@example.com", "holder@other.example"):
            self.assertEqual(self.ctl("user", "show", u).stdout.split("\n", 2)[2],
                             self.ctl("user", "show", u, store=other).stdout.split("\n", 2)[2])
        # import from stdin, and --replace wipes users and groups first
        small = {"version": 1, "users": {"new@example.com": {"pop": False}}}
        self.ctl("import", "--replace", "-", stdin=json.dumps(small), store=other)
        doc3 = self.export(store=other)
        self.assertEqual(list(doc3["users"]), ["new@example.com"])
        self.assertEqual(doc3.get("groups", {}), {})
        self.assertEqual(doc3["domains"], doc["domains"])   # domains are kept
        self.assertEqual(doc3["org"], doc["org"])

    def test_broken_import_changes_nothing(self):
        self.ctl("user", "set", "keep@example.com", "imap=off")
        self.ctl("group", "create", "team")
        self.ctl("group", "add", "team", "keep@example.com")
        before = self.export()
        gen = self.generation()
        users = {"u%04d@example.com" % i: {"imap": bool(i % 2)} for i in range(2000)}
        users["keep@example.com"] = {"imap": True}   # would change an existing user
        for bad_users, needle in (
                (dict(users, **{"u1000@example.com": {"imap": "maybe"}}), "u1000@example.com"),
                (dict(users, **{"not an address": {"imap": True}}), "not an address"),
                (dict(users, **{"u1500@example.com": {"frobnicate": True}}),
                 "u1500@example.com"),
                (dict(users, **{"u1700@example.com": {"pop": "hold"}}), "u1700@example.com")):
            doc = {"version": 1, "org": {"pop": False},
                   "domains": {"example.com": {"outgoing": False}},
                   "users": bad_users,
                   "groups": {"team": {"kind": "group", "members": ["u0001@example.com"]}}}
            r = self.ctl("import", self.write_json("bad.json", doc), code=EXIT_USAGE)
            self.assertIn(needle, r.stderr)
            self.assertIn("nothing imported", r.stderr)
            self.assertEqual(self.export(), before)
            self.assertEqual(self.generation(), gen)
        # a bad group member, a bad domain, a bad version, truncated JSON
        for doc in ({"users": users, "groups": {"g": {"kind": "group", "members": ["x"]}}},
                    {"users": users, "domains": {"bad domain!": {"pop": True}}},
                    {"version": 2, "users": users},
                    json.dumps({"users": users})[:-100]):
            self.ctl("import", self.write_json("bad.json", doc), code=EXIT_USAGE)
            self.assertEqual(self.export(), before)
            self.assertEqual(self.generation(), gen)
        # the good version of the same document goes in whole
        doc = {"version": 1, "users": users}
        self.ctl("import", self.write_json("good.json", doc))
        self.assertEqual(len(self.export()["users"]), 2001)   # with keep@
        self.assertEqual(self.show("keep@example.com")["imap"], ("on", "user"))
        self.ctl("import", os.path.join(self.dir, "missing.json"), code=EXIT_USAGE)

    def test_errors_and_exit_codes(self):
        # malformed addresses
        for addr in ("no-at-sign", "a@", "@example.com", "a b@example.com",
                     "a@exa mple.com", "x" * 309 + "@example.com", ""):
            r = self.ctl("user", "set", addr, "imap=off", code=EXIT_USAGE)
            self.assertIn("malformed address", r.stderr, addr)
            self.ctl("user", "show", addr, code=EXIT_USAGE)
        self.assertEqual(len("x" * 309 + "@example.com"), 321)   # POL_ADDRESS_MAX + 1
        # bad flags and settings
        for setting, needle in (("imap=maybe", "bad value for imap"),
                                ("frob=on", "unknown setting 'frob'"),
                                ("imap", "bad setting 'imap'"),
                                ("pop=hold", "bad value for pop"),
                                ("backend=no spaces", "bad backend name"),
                                ("message=" + "x" * 300, "limit is 255"),
                                ("message=line\nbreak", "control character")):
            r = self.ctl("user", "set", "alice@example.com", setting, code=EXIT_USAGE)
            self.assertIn(needle, r.stderr, setting)
        # nothing above created the store or the user
        r = self.ctl("user", "show", "alice@example.com", code=EXIT_STORE)
        self.assertIn("no policy store", r.stderr)
        self.ctl("domain", "set", "example..com", "pop=off", code=EXIT_USAGE)
        self.ctl("domain", "set", "-bad.example", "pop=off", code=EXIT_USAGE)
        self.ctl("org", "set", "imap=sometimes", code=EXIT_USAGE)
        # unknown user, group, domain
        self.ctl("user", "set", "alice@example.com", "imap=off")
        # the longest address (POL_ADDRESS_MAX, 320 bytes) is accepted
        longest = "y" * 64 + "@" + ".".join(["d" * 63] * 3) + "." + "e" * 63
        self.assertEqual(len(longest), 320)
        self.ctl("user", "set", longest, "pop=off")
        self.assertEqual(self.show(longest)["pop"], ("off", "user"))
        r = self.ctl("user", "show", "nobody@example.com", code=EXIT_UNKNOWN)
        self.assertIn("no such user: nobody@example.com", r.stderr)
        self.ctl("user", "delete", "nobody@example.com", code=EXIT_UNKNOWN)
        self.ctl("group", "delete", "nogroup", code=EXIT_UNKNOWN)
        self.ctl("domain", "show", "nodomain.example", code=EXIT_UNKNOWN)
        # usage errors
        self.ctl("user", code=EXIT_USAGE)
        self.ctl("user", "frob", "a@b.example", code=EXIT_USAGE)
        self.ctl("user", "show", code=EXIT_USAGE)
        self.ctl("user", "show", "alice@example.com", "extra", code=EXIT_USAGE)
        self.ctl("frobnicate", code=EXIT_USAGE)
        self.ctl("group", "add", "team", code=EXIT_USAGE)
        self.ctl("export", "a", "b", code=EXIT_USAGE)
        # a store that is not one
        bogus = os.path.join(self.dir, "bogus")
        os.makedirs(bogus)
        with open(os.path.join(bogus, "data.mdb"), "wb") as f:
            f.write(b"this is not an LMDB file" * 1000)
        self.ctl("user", "show", "alice@example.com", code=EXIT_STORE, store=bogus)
        self.ctl("user", "set", "alice@example.com", "imap=on", code=EXIT_STORE, store=bogus)
        # the good user is still there and unchanged
        self.assertEqual(self.show("alice@example.com")["imap"], ("off", "user"))


if __name__ == "__main__":
    harness.main()
