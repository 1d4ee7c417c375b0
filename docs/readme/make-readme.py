#!/usr/bin/python3
"""Fill README.md.in with output captured from real runs (tools/demo and a
second scripted session), so the README shows what the programs print."""
import sys
tmpl, demo, extra, out = sys.argv[1:]
text = open(tmpl).read()
demo_out = open(demo).read().rstrip("\n")
extra_out = open(extra).read()
blocks = extra_out.split("\n$ ")
node9 = "$ " + [b for b in blocks if b.startswith("ispctl flash node9")][0].rstrip("\n")
json_part = "\n\n".join(("" if b.startswith("$ ") else "$ ") + b.rstrip("\n") for b in blocks if "--json" in b.split("\n")[0])
text = text.replace("@DEMO@", demo_out).replace("@NODE9@", node9 + "\n$ echo $?\n3").replace("@JSON@", json_part)
open(out, "w").write(text)
