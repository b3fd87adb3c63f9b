#!/usr/bin/env python3
"""tests/bench/bench_import.py: times posternctl import/export on a large
generated policy document and prints the figures.

    python3 tests/bench/bench_import.py --posternctl build/posternctl [--users 100000]

The document has N users spread over 20 domains (a mix of explicit flags,
admin messages, incoming holds and backend routes), domain and org defaults,
and 50 groups of 200 members. Steps, each timed as wall clock of the whole
posternctl process (start-up included):
  1. import into a fresh store (one write transaction)
  2. export to a file
  3. import --replace of that export over the same store
  4. export again, compared with the first (minus the generation)
  5. user list (text), and a few explain calls
The store lives in a temporary directory that is removed at the end.
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

SERVICES = ["imap", "pop", "activesync", "incoming", "outgoing", "spamcheck"]


def make_document(n_users, rng):
    domains = ["d%02d.example.com" % i for i in range(20)]
    users = {}
    for i in range(n_users):
        addr = "user%07d@%s" % (i, domains[i % len(domains)])
        rec = {}
        r = rng.random()
        if r < 0.10:
            rec["imap"] = False
            rec["message"] = "IMAP is off for %s, ask the helpdesk (ticket %d)." % (addr, i)
        elif r < 0.20:
            rec["pop"] = False
        elif r < 0.25:
            rec["activesync"] = False
            rec["outgoing"] = False
        elif r < 0.26:
            rec["incoming"] = "hold"
        elif r < 0.30:
            rec["backend"] = "pool-%d" % (i % 4)
        elif r < 0.35:
            for s in SERVICES:
                rec[s] = True
        users[addr] = rec
    doc = {
        "version": 1,
        "org": {"spamcheck": True, "message": "Access refused by the organisation."},
        "domains": {d: ({"pop": False} if k % 3 == 0 else {}) for k, d in enumerate(domains)},
        "users": users,
        "groups": {},
    }
    addrs = list(users)
    for g in range(50):
        members = rng.sample(addrs, min(200, len(addrs)))
        doc["groups"]["group%02d" % g] = {
            "kind": "group", "description": "Generated group %d" % g, "members": members}
    doc["groups"]["shared@d00.example.com"] = {"kind": "shared", "members": addrs[:10]}
    return doc


def run(ctl, store, *args, stdout=subprocess.DEVNULL, check=True):
    t0 = time.perf_counter()
    p = subprocess.run([ctl, "-d", store] + list(args), stdout=stdout,
                       stderr=subprocess.PIPE, check=False)
    dt = time.perf_counter() - t0
    if check and p.returncode != 0:
        sys.exit("posternctl %s failed (%d): %s" % (" ".join(args), p.returncode,
                                                    p.stderr.decode(errors="replace")))
    return dt, p


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--posternctl", default=os.environ.get("POSTERNCTL_BIN", "posternctl"))
    ap.add_argument("--users", type=int, default=100000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="postern-bench-import-")
    try:
        store = os.path.join(tmp, "policy")
        doc_path = os.path.join(tmp, "users.json")
        exp1 = os.path.join(tmp, "export1.json")
        exp2 = os.path.join(tmp, "export2.json")

        t0 = time.perf_counter()
        doc = make_document(args.users, random.Random(args.seed))
        with open(doc_path, "w") as f:
            json.dump(doc, f, indent=1)
        t_gen = time.perf_counter() - t0
        size = os.path.getsize(doc_path)
        members = sum(len(g["members"]) for g in doc["groups"].values())

        t_imp, p = run(args.posternctl, store, "import", doc_path, stdout=subprocess.PIPE)
        imp_out = p.stdout.decode().strip()
        t_exp, _ = run(args.posternctl, store, "export", exp1)
        t_rep, _ = run(args.posternctl, store, "import", "--replace", exp1)
        t_exp2, _ = run(args.posternctl, store, "export", exp2)
        t_list, p = run(args.posternctl, store, "user", "list", stdout=subprocess.PIPE)
        listed = p.stdout.count(b"\n")
        t_expl = []
        for addr in ("user0000000@d00.example.com", "user0000007@d07.example.com",
                     "nobody@d03.example.com"):
            dt, _ = run(args.posternctl, store, "explain", addr, "imap", check=False)
            t_expl.append(dt)

        with open(exp1) as f:
            e1 = json.load(f)
        with open(exp2) as f:
            e2 = json.load(f)
        e1.pop("generation")
        e2.pop("generation")
        roundtrip = e1 == e2 and len(e1["users"]) == args.users
        data_mdb = os.path.getsize(os.path.join(store, "data.mdb"))

        print("bench_import: %d users, %d domains, %d groups, %d memberships" %
              (args.users, len(doc["domains"]), len(doc["groups"]), members))
        print("  document          %8.1f MB   (generated in %.2f s)" % (size / 1e6, t_gen))
        print("  import (fresh)    %8.3f s    %s" % (t_imp, imp_out))
        print("  export            %8.3f s    %.1f MB" % (t_exp, os.path.getsize(exp1) / 1e6))
        print("  import --replace  %8.3f s    (of the export, same store)" % t_rep)
        print("  export again      %8.3f s    round trip equal: %s" % (t_exp2, roundtrip))
        print("  user list (text)  %8.3f s    %d lines" % (t_list, listed))
        print("  explain (process) %8.3f s    per call, start-up included" %
              (sum(t_expl) / len(t_expl)))
        print("  store data.mdb    %8.1f MB" % (data_mdb / 1e6))
        return 0 if roundtrip else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
