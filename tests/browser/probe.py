#!/usr/bin/env python3
"""Loads a page in headless Chromium and samples it in real time, for the status page's test.

Usage: probe.py URL OUT.png TIMEOUT_S VALUES_JS STOP_JS

Every 250 ms it evaluates VALUES_JS (an expression giving a JSON-serializable value) and prints
`SAMPLE <seconds since navigation> <json>`; it stops when STOP_JS is truthy or after TIMEOUT_S,
then saves a screenshot of the whole page to OUT.png and prints `DONE`. Chromium is driven over the DevTools
protocol on a pipe (--remote-debugging-pipe: fd 3 carries commands to Chromium, fd 4 its
replies, each JSON message ended by a NUL byte), so only the standard library is needed and no
port is opened. Media plays in real time: headless Chromium without a sound device uses a fake
output paced by the clock (virtual-time flags do not advance audio).
"""
import base64, json, os, shutil, subprocess, sys, tempfile, threading, time, urllib.parse

url, out_png, timeout, values_js, stop_js = sys.argv[1:6]
timeout = float(timeout)
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--no-default-browser-check", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-default-apps",
         "--disable-extensions", "--metrics-recording-only",
         "--autoplay-policy=no-user-gesture-required", "--window-size=1200,900",
         # No DNS at all: the page's own host (loopback, or an address of this machine) and
         # nothing else may be reached.
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost, EXCLUDE "
         + urllib.parse.urlsplit(url).hostname]
profile = tempfile.mkdtemp(prefix="chorus-probe-")
to_r, to_w = os.pipe()
from_r, from_w = os.pipe()


def child_fds():
    a, b = os.dup(to_r), os.dup(from_w)
    os.dup2(a, 3)
    os.dup2(b, 4)
    os.set_inheritable(3, True)
    os.set_inheritable(4, True)


env = dict(os.environ, PULSE_SERVER="unix:/nonexistent")  # the fake output is steadier
proc = subprocess.Popen(["chromium", *FLAGS, f"--user-data-dir={profile}",
                         "--remote-debugging-pipe", "about:blank"],
                        pass_fds=(3, 4, to_r, from_w), preexec_fn=child_fds, env=env,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
os.close(to_r)
os.close(from_w)
wr = os.fdopen(to_w, "wb", buffering=0)
rd = os.fdopen(from_r, "rb", buffering=0)
pending, lock, next_id = {}, threading.Lock(), [0]


def reader():
    buf = b""
    while True:
        chunk = rd.read(65536)
        if not chunk:
            return
        buf += chunk
        while b"\0" in buf:
            msg, buf = buf.split(b"\0", 1)
            m = json.loads(msg)
            if "id" in m:
                with lock:
                    pending[m["id"]] = m


threading.Thread(target=reader, daemon=True).start()


def call(method, params=None, session=None, wait=30):
    next_id[0] += 1
    i = next_id[0]
    m = {"id": i, "method": method, "params": params or {}}
    if session:
        m["sessionId"] = session
    wr.write(json.dumps(m).encode() + b"\0")
    end = time.time() + wait
    while time.time() < end:
        with lock:
            if i in pending:
                r = pending.pop(i)
                if "error" in r:
                    raise RuntimeError(f"{method}: {r['error']}")
                return r["result"]
        time.sleep(0.01)
    raise TimeoutError(method)


def evaluate(expr, sess):
    r = call("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session=sess)
    if "exceptionDetails" in r:
        d = r["exceptionDetails"]
        return {"exception": d.get("exception", {}).get("description") or d.get("text")}
    return r["result"].get("value")


try:
    page = next(t for t in call("Target.getTargets")["targetInfos"] if t["type"] == "page")
    sess = call("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True})["sessionId"]
    call("Page.enable", session=sess)
    call("Runtime.enable", session=sess)
    call("Emulation.setDeviceMetricsOverride", {"width": 1200, "height": 900,
         "deviceScaleFactor": 1, "mobile": False}, session=sess)
    t0 = time.time()
    call("Page.navigate", {"url": url}, session=sess)
    while time.time() - t0 < timeout:
        time.sleep(0.25)
        print(f"SAMPLE {time.time() - t0:.2f} {json.dumps(evaluate(values_js, sess))}", flush=True)
        if evaluate(stop_js, sess):
            break
    # The whole page, not only the window: the screenshot is for people reading docs/.
    size = call("Page.getLayoutMetrics", session=sess)["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 4000), "scale": 1}
    png = call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                          "clip": clip}, session=sess)["data"]
    with open(out_png, "wb") as f:
        f.write(base64.b64decode(png))
    print("DONE", flush=True)
    try:
        call("Browser.close", wait=5)
    except Exception:
        pass
finally:
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    shutil.rmtree(profile, ignore_errors=True)
