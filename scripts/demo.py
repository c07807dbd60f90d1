"""`make demo`: the whole story against the bundled simulator, in a throwaway directory.

Daemon up -> session created -> QR printed in the terminal -> the simulated phone scans it ->
a message sent from a shell pipe -> a reply arrives in the inbox -> health OK -> clean stop.
Nothing is left running afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ME, FRIEND = "15550001111", "15550002222"


def step(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def sim_call(url: str, action: str, **params: object) -> object:
    req = urllib.request.Request(
        url + "_sim/" + action,
        data=json.dumps(params).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())["result"]


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="wasupd-demo-"))
    env = {**os.environ, "WASUP_SOCKET": str(root / "run/wasupd.sock")}
    bindir = Path(sys.executable).parent
    ctl = [str(bindir / "wasupctl")]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        step("start the WhatsApp Web simulator (python -m wasupd.sim)")
        sim = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wasupd.sim",
                "--port",
                "0",
                "--time-factor",
                "0.5",
                "--accounts",
                f"{ME},{FRIEND}",
            ],
            stdout=subprocess.PIPE,
        )
        procs.append(sim)
        url = sim.stdout.readline().decode().strip()  # type: ignore[union-attr]
        print(f"simulator at {url}")

        step("start wasupd with a throwaway config")
        cfg = root / "wasupd.toml"
        cfg.write_text(
            f'[daemon]\nruntime_dir = "{root}/run"\nstate_dir = "{root}/state"\nsocket_group = ""\n'
            f'log_format = "json"\n[browser]\nurl = "{url}"\n[profiles]\nkey_file = "{root}/profile.key"\n'
            "[send]\npacing = false\n"
        )
        subprocess.run([str(bindir / "wasupd"), "--config", str(cfg), "keygen"], check=True)
        step("wasupd check   (what the daemon needs on this host)")
        subprocess.run([str(bindir / "wasupd"), "--config", str(cfg), "check"], check=True)
        log = open(root / "daemon.log", "wb")
        daemon = subprocess.Popen(
            [str(bindir / "wasupd"), "--config", str(cfg)], stdout=log, stderr=log
        )
        procs.append(daemon)
        for _ in range(100):
            if subprocess.run([*ctl, "status"], env=env, capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        subprocess.run([*ctl, "status"], env=env, check=True)

        step("wasupctl session create demo --phone +1 555 000 1111 --no-wait")
        subprocess.run(
            [*ctl, "session", "create", "demo", "--phone", f"+{ME}", "--no-wait"],
            env=env,
            check=True,
        )
        step("wasupctl qr demo   (scan this with WhatsApp > Linked devices)")
        subprocess.run([*ctl, "qr", "demo"], env=env, check=True)
        payload = subprocess.run(
            [*ctl, "qr", "demo", "--format", "raw"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        step("the simulated phone scans the QR")
        sim_call(url, "scan", payload=payload, phone=ME)
        for _ in range(300):
            out = subprocess.run(
                [*ctl, "--json", "session", "show", "demo"], env=env, capture_output=True, text=True
            )
            if json.loads(out.stdout)["state"] == "connected":
                break
            time.sleep(0.1)
        subprocess.run([*ctl, "session", "list"], env=env, check=True)

        step(f"echo 'Your order has shipped 📦' | wasupctl send +{FRIEND} --from demo --wait sent")
        subprocess.run(
            [*ctl, "send", f"+{FRIEND}", "--from", "demo", "--wait", "sent"],
            env=env,
            check=True,
            input="Your order has shipped 📦".encode(),
        )
        print(
            "the friend's phone received:",
            [m["body"] for m in sim_call(url, "received", phone=FRIEND)],
        )  # type: ignore[union-attr]

        step("the friend replies; wasupctl inbox")
        sim_call(url, "inject", to=ME, **{"from": FRIEND}, text="Thanks! 🙏")
        for _ in range(150):  # the reply reaches the page, then the inbox: at most 15 s
            out = subprocess.run(
                [*ctl, "--json", "inbox"], env=env, capture_output=True, text=True, check=True
            )
            if out.stdout.strip():  # one JSON line per message
                break
            time.sleep(0.1)
        subprocess.run([*ctl, "inbox"], env=env, check=True)

        step("wasupctl health")
        subprocess.run([*ctl, "health"], env=env, check=True)

        step("wasupctl backup   (consistent while the session runs; wasupd restore puts it back)")
        subprocess.run([*ctl, "backup"], env=env, check=True)

        step("stop the daemon (SIGTERM): browsers stopped, profile sealed")
        daemon.terminate()
        print("daemon exit status:", daemon.wait(60))
        print("sealed archive:", sorted(p.name for p in (root / "state/profiles").iterdir()))
        return 0
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                p.wait(30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
