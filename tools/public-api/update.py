#!/usr/bin/env python3
"""Adds every public symbol the PublicApiAnalyzers report as undeclared (RS0016) to the project's
PublicAPI.Unshipped.txt, using the exact API line the analyzer puts in its SARIF log. Review the diff: that is
the point of the files. A removed or changed member is RS0017: delete its old line by hand (deliberately: a
removal is a breaking change someone should see).   tools/public-api/update.py [src/Project ...]   (default: every library with the files)"""
import glob
import json
import os
import subprocess
import sys

projects = sys.argv[1:] or sorted(os.path.dirname(p) for p in glob.glob("src/*/PublicAPI.Unshipped.txt"))
for project in projects:
    csproj = glob.glob(f"{project}/*.csproj")[0]
    log = f"/tmp/public-api-{os.path.basename(project)}.sarif"
    # Dependencies first, without the log: ErrorLog would collect their diagnostics too.
    subprocess.run(["dotnet", "build", csproj, "-nologo", "-v", "q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(10):  # the compiler reports a bounded number per run; repeat until none is left
        subprocess.run(["dotnet", "build", csproj, "--no-dependencies", "-nologo", "-v", "q", f"-p:ErrorLog={log}%2Cversion=2.1"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        results = json.load(open(log))["runs"][0]["results"]
        names = {r["properties"]["customProperties"]["APIName"] for r in results if r["ruleId"] == "RS0016"}
        if not names:
            break
        path = f"{project}/PublicAPI.Unshipped.txt"
        lines = [l for l in open(path).read().splitlines() if l]
        header = [l for l in lines if l.startswith("#")]
        body = sorted(set(l for l in lines if not l.startswith("#")) | names)
        open(path, "w").write("\n".join(header + body) + "\n")
        print(f"{project}: {len(names)} added")
