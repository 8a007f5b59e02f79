#!/usr/bin/env python3
"""trace2svg.py: draws a csp execution trace (Chrome trace-event JSON or Perfetto protobuf) as an SVG timeline.

    python3 tools/trace2svg.py trace.json out.svg [--from MS] [--to MS] [--width PX]
    python3 tools/trace2svg.py trace.pftrace out.svg

One lane per goroutine (its name from the trace), running slices as bars, wake-ups as arrows
from the goroutine that woke another to the slice it woke, block reasons as coloured ticks with
tooltips, GC cycles as dashed lines. Only the Python standard library.
"""
import argparse
import html
import os
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tracefile  # noqa: E402  (reads either format)

REASONS = [  # (prefix of the block reason, colour, legend)
    ("chan send", "#d62728", "chan send"),
    ("chan receive", "#1f77b4", "chan receive"),
    ("select", "#9467bd", "select"),
    ("sync.", "#ff7f0e", "sync.Mutex / WaitGroup / ..."),
    ("sleep", "#2ca02c", "sleep"),
    ("IO wait", "#8c564b", "I/O"),
    ("syscall", "#8c564b", None),
    ("end", "#000000", "end"),
]


def reason_colour(name):
    for prefix, colour, _ in REASONS:
        if name.startswith(prefix):
            return colour
    return "#7f7f7f"


def slice_colour(name):
    h = zlib.crc32(name.encode()) % 360
    return "hsl(%d,55%%,72%%)" % h


def nice_step(span):
    for s in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200,
              500, 1000, 2000, 5000, 10000):
        if span / s <= 10:
            return s
    return span / 10


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trace")
    ap.add_argument("out")
    ap.add_argument("--from", dest="t_from", type=float, help="start, ms from the trace's start")
    ap.add_argument("--to", dest="t_to", type=float, help="end, ms from the trace's start")
    ap.add_argument("--width", type=int, default=1100)
    a = ap.parse_args()
    events = tracefile.load(a.trace)

    names, slices, blocks, wakes, gcs, flows = {}, [], [], [], [], {}
    for e in events:
        ph = e.get("ph")
        if ph == "M" and e.get("name") == "thread_name":
            names[e["tid"]] = e["args"]["name"]
        elif ph == "X":
            slices.append(e)
        elif ph == "i" and e.get("cat", "block") in ("", "block"):  # JSON block instants: no category
            blocks.append(e)
        elif ph == "i" and e.get("cat") == "wake":
            wakes.append(e)
        elif ph == "i" and e.get("cat") == "gc":
            gcs.append(e)
        elif ph in ("s", "f"):
            flows.setdefault(e["id"], {})[ph] = e
    timed = slices + blocks + wakes + gcs
    if not timed:
        raise SystemExit("trace2svg: no events in " + a.trace)
    first = min(e["ts"] for e in timed)
    t0 = first + (a.t_from * 1000 if a.t_from is not None else 0)
    t1 = first + a.t_to * 1000 if a.t_to is not None else max(e["ts"] + e.get("dur", 0) for e in timed)
    if t1 <= t0:
        t1 = t0 + 1
    tids = sorted(t for t in names if t != 0 or gcs)
    lane_h, left, top = 26, 190, 34
    width = a.width
    plot_w = width - left - 20
    height = top + lane_h * len(tids) + 60
    lane = {t: top + i * lane_h for i, t in enumerate(tids)}

    def x(ts):
        return left + (ts - t0) / (t1 - t0) * plot_w

    def visible(ts, dur=0):
        return ts + dur >= t0 and ts <= t1

    out = []
    w = out.append
    w('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" '
      'font-size="11">' % (width, height))
    w('<defs><marker id="arrow" viewBox="0 0 6 6" refX="5" refY="3" markerWidth="5" markerHeight="5" '
      'orient="auto"><path d="M0,0 L6,3 L0,6 z" fill="#444"/></marker></defs>')
    w('<rect width="100%" height="100%" fill="white"/>')
    w('<text x="%d" y="18" font-size="13" font-weight="bold">csp execution trace: %s</text>'
      % (left, html.escape(a.trace.split("/")[-1])))
    for i, t in enumerate(tids):  # lanes
        y = lane[t]
        if i % 2 == 0:
            w('<rect x="0" y="%d" width="%d" height="%d" fill="#f4f4f4"/>' % (y, width, lane_h))
        w('<text x="6" y="%d">%s</text>' % (y + 17, html.escape(names.get(t, "G%d" % t)[:30])))
    step = nice_step((t1 - t0) / 1000)  # axis, in ms
    k = int(((t0 - first) / 1000) / step) + 1
    ybase = top + lane_h * len(tids)
    while True:
        ms = k * step
        ts = first + ms * 1000
        if ts > t1:
            break
        xx = x(ts)
        w('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>' % (xx, top, xx, ybase))
        w('<text x="%.1f" y="%d" text-anchor="middle" fill="#555">%g ms</text>' % (xx, ybase + 14, ms))
        k += 1
    for e in gcs:
        if visible(e["ts"]) and 0 in lane:
            xx = x(e["ts"])
            w('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#2ca02c" stroke-dasharray="3,3">'
              '<title>GC cycle at %.3f ms</title></line>' % (xx, top, xx, ybase, (e["ts"] - first) / 1000))
    for e in slices:
        if e["tid"] not in lane or not visible(e["ts"], e["dur"]):
            continue
        x0, x1 = max(x(e["ts"]), left), min(x(e["ts"] + e["dur"]), left + plot_w)
        w('<rect x="%.2f" y="%d" width="%.2f" height="14" fill="%s" stroke="#555" stroke-width="0.3">'
          '<title>%s: %.3f ms at %.3f ms</title></rect>'
          % (x0, lane[e["tid"]] + 4, max(x1 - x0, 0.8), slice_colour(e["name"]), html.escape(e["name"]),
             e["dur"] / 1000, (e["ts"] - first) / 1000))
    for e in blocks:
        if e["tid"] in lane and visible(e["ts"]):
            xx, y = x(e["ts"]), lane[e["tid"]]
            w('<rect x="%.2f" y="%d" width="1.6" height="6" fill="%s"><title>%s</title></rect>'
              % (xx - 0.8, y + 19, reason_colour(e["name"]), html.escape(e["name"])))
    for e in wakes:
        if e["tid"] in lane and visible(e["ts"]):
            xx, y = x(e["ts"]), lane[e["tid"]]
            w('<circle cx="%.2f" cy="%d" r="2.5" fill="none" stroke="#2ca02c"><title>%s</title></circle>'
              % (xx, y + 4, html.escape(e["name"])))
    for fl in flows.values():
        s, f = fl.get("s"), fl.get("f")
        if not s or not f or s["tid"] not in lane or f["tid"] not in lane:
            continue
        if not (visible(s["ts"]) or visible(f["ts"])):
            continue
        w('<line x1="%.2f" y1="%d" x2="%.2f" y2="%d" stroke="#333" stroke-opacity="0.8" '
          'stroke-width="1" marker-end="url(#arrow)"><title>%s</title></line>'
          % (x(s["ts"]), lane[s["tid"]] + 11, x(f["ts"]), lane[f["tid"]] + 11, html.escape(s.get("name", ""))))
    lx = left  # legend
    ly = ybase + 34
    w('<text x="6" y="%d" fill="#555">block reasons:</text>' % (ly + 6))
    for _, colour, label in REASONS:
        if label is None:
            continue
        w('<rect x="%d" y="%d" width="10" height="8" fill="%s"/>' % (lx, ly - 2, colour))
        w('<text x="%d" y="%d">%s</text>' % (lx + 14, ly + 6, html.escape(label)))
        lx += 28 + 7 * len(label)
    w('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#444" marker-end="url(#arrow)"/>'
      % (lx, ly + 2, lx + 22, ly + 2))
    w('<text x="%d" y="%d">wake-up (go, send, unlock...)</text>' % (lx + 28, ly + 6))
    w('</svg>')
    with open(a.out, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
