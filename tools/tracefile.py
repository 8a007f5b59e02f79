#!/usr/bin/env python3
"""tracefile.py: reads a csp execution trace, Chrome trace-event JSON or Perfetto protobuf.

    python3 tools/tracefile.py TRACE      # checks it, prints its events as JSON lines

load(path) returns the events as Chrome trace-event dicts (ph, tid, ts in microseconds, ...)
whichever the format: a protobuf trace's slices become "X" events, its instants "i", its tracks
"M" thread_name events. Flows, in either format, become one "s" (where a slice that woke another
ends) and one "f" (where the woken slice starts) per arrow, numbered from 1 in file order: csp
writes a chain of wakes as one id stepping from slice to slice (JSON: an "s" and an "f" of
that id per hop, Chrome's flow events v1; the slices' bind_id, flow_in and flow_out fields of
flow events v2 are read too; protobuf: flow_ids at a slice's end, terminating_flow_ids at the
next one's start). Only side flows have names in JSON, none in protobuf. The protobuf reader is strict: only the
fields csp writes, each with the wire type Perfetto's protos give it (perfetto.protos Trace,
TracePacket, TrackEvent, TrackDescriptor, InternedData), every interned name and track defined
before use, slices closed on their own track, flows ending after they start. Standard library
only: Debian packages neither Perfetto nor python3-protobuf's descriptors for it.
"""
import json
import sys

VARINT, FIXED64, LEN = 0, 1, 2

# message -> field number -> (name, wire type, message type or None, repeated)
SCHEMA = {
    "Trace": {1: ("packet", LEN, "TracePacket", True)},
    "TracePacket": {
        8: ("timestamp", VARINT, None, False),
        10: ("trusted_packet_sequence_id", VARINT, None, False),
        11: ("track_event", LEN, "TrackEvent", False),
        12: ("interned_data", LEN, "InternedData", False),
        13: ("sequence_flags", VARINT, None, False),
        60: ("track_descriptor", LEN, "TrackDescriptor", False),
    },
    "TrackEvent": {
        3: ("category_iids", VARINT, None, True),
        9: ("type", VARINT, None, False),
        10: ("name_iid", VARINT, None, False),
        11: ("track_uuid", VARINT, None, False),
        47: ("flow_ids", FIXED64, None, True),
        48: ("terminating_flow_ids", FIXED64, None, True),
    },
    "InternedData": {
        1: ("event_categories", LEN, "EventCategory", True),
        2: ("event_names", LEN, "EventName", True),
    },
    "EventCategory": {1: ("iid", VARINT, None, False), 2: ("name", LEN, "string", False)},
    "EventName": {1: ("iid", VARINT, None, False), 2: ("name", LEN, "string", False)},
    "TrackDescriptor": {
        1: ("uuid", VARINT, None, False),
        2: ("name", LEN, "string", False),
        3: ("process", LEN, "ProcessDescriptor", False),
        4: ("thread", LEN, "ThreadDescriptor", False),
        5: ("parent_uuid", VARINT, None, False),
    },
    "ProcessDescriptor": {1: ("pid", VARINT, None, False), 6: ("process_name", LEN, "string", False)},
    "ThreadDescriptor": {
        1: ("pid", VARINT, None, False),
        2: ("tid", VARINT, None, False),
        5: ("thread_name", LEN, "string", False),
    },
}

SLICE_BEGIN, SLICE_END, INSTANT = 1, 2, 3
SEQ_INCREMENTAL_STATE_CLEARED = 1


class TraceError(Exception):
    pass


def varint(buf, i, end):
    v, shift = 0, 0
    while True:
        if i >= end or shift > 63:
            raise TraceError("bad varint at byte %d" % i)
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return v, i


def decode(buf, msg, i=0, end=None):
    """Decodes message type msg from buf[i:end] into a dict, checking every field's wire type."""
    end = len(buf) if end is None else end
    fields, out = SCHEMA[msg], {}
    while i < end:
        key, i = varint(buf, i, end)
        num, wt = key >> 3, key & 7
        if num not in fields:
            raise TraceError("%s: unknown field %d at byte %d" % (msg, num, i))
        name, want, sub, repeated = fields[num]
        if wt != want:
            raise TraceError("%s.%s: wire type %d, not %d" % (msg, name, wt, want))
        if wt == VARINT:
            v, i = varint(buf, i, end)
        elif wt == FIXED64:
            if i + 8 > end:
                raise TraceError("%s.%s: truncated" % (msg, name))
            v, i = int.from_bytes(buf[i:i + 8], "little"), i + 8
        else:
            n, i = varint(buf, i, end)
            if i + n > end:
                raise TraceError("%s.%s: length %d past the end" % (msg, name, n))
            v = buf[i:i + n].decode("utf-8") if sub == "string" else decode(buf, sub, i, i + n)
            i += n
        if repeated:
            out.setdefault(name, []).append(v)
        elif name in out:
            raise TraceError("%s.%s twice" % (msg, name))
        else:
            out[name] = v
    return out


def load_protobuf(data):
    events, names, cats, tracks = [], {}, {}, {}
    open_slices, flows_begun = {}, {}
    packets = decode(data, "Trace").get("packet", [])
    if not packets or not packets[0].get("sequence_flags", 0) & SEQ_INCREMENTAL_STATE_CLEARED:
        raise TraceError("the first packet does not clear the sequence's incremental state")
    for p in packets:
        if p.get("trusted_packet_sequence_id") != 1:
            raise TraceError("packet outside sequence 1: %r" % p)
        for c in p.get("interned_data", {}).get("event_categories", []):
            cats[c["iid"]] = c["name"]
        for n in p.get("interned_data", {}).get("event_names", []):
            if n["iid"] in names:
                raise TraceError("name iid %d interned twice" % n["iid"])
            names[n["iid"]] = n["name"]
        td = p.get("track_descriptor")
        if td:
            uuid = td["uuid"]
            if "process" in td:
                tracks[uuid] = None
                events.append({"ph": "M", "pid": td["process"]["pid"], "name": "process_name",
                               "args": {"name": td["process"]["process_name"]}})
                continue
            if td.get("parent_uuid") not in tracks:
                raise TraceError("track %d's parent is not described first" % uuid)
            tid = td["thread"]["tid"] if "thread" in td else uuid - 1
            if tid != uuid - 1:
                raise TraceError("track %d is not goroutine %d's" % (uuid, tid))
            tracks[uuid] = tid
            name = td["thread"]["thread_name"] if "thread" in td else td["name"]
            events.append({"ph": "M", "pid": 1, "tid": tid, "name": "thread_name", "args": {"name": name}})
        te = p.get("track_event")
        if te is None:
            continue
        if "timestamp" not in p:
            raise TraceError("track event without a timestamp")
        ts = p["timestamp"] / 1000.0
        uuid = te.get("track_uuid")
        if tracks.get(uuid) is None:
            raise TraceError("event on undescribed track %r" % uuid)
        tid = tracks[uuid]
        cat = [cats[c] for c in te.get("category_iids", [])]
        name = te.get("name_iid")
        if name is not None and name not in names:
            raise TraceError("name iid %d used before it is interned" % name)
        name = names.get(name, "")
        kind = te.get("type")
        if kind == SLICE_BEGIN:
            if uuid in open_slices:
                raise TraceError("G%d: a slice begins inside another" % tid)
            open_slices[uuid] = {"ph": "X", "pid": 1, "tid": tid, "ts": ts, "name": name, "cat": ",".join(cat)}
            events.append(open_slices[uuid])
        elif kind == SLICE_END:
            s = open_slices.pop(uuid, None)
            if s is None:
                raise TraceError("G%d: a slice ends that did not begin" % tid)
            s["dur"] = ts - s["ts"]
        elif kind == INSTANT:
            events.append({"ph": "i", "pid": 1, "tid": tid, "ts": ts, "name": name, "cat": ",".join(cat), "s": "t"})
        else:
            raise TraceError("event type %r" % kind)
        for f in te.get("flow_ids", []):
            if f in flows_begun:
                raise TraceError("flow %d starts twice without ending" % f)
            flows_begun[f] = ts
            events.append({"ph": "s", "pid": 1, "tid": tid, "ts": ts, "id": f, "name": "", "cat": "flow"})
        for f in te.get("terminating_flow_ids", []):
            if f not in flows_begun:  # its start was not recorded: Perfetto ignores it too
                continue
            if flows_begun.pop(f) > ts:
                raise TraceError("flow %d ends before it starts" % f)
            events.append({"ph": "f", "pid": 1, "tid": tid, "ts": ts, "id": f, "name": "", "cat": "flow", "bp": "e"})
    if open_slices:
        raise TraceError("slices never ended on tracks %r" % sorted(open_slices))
    return events


def split_flows(events):
    """The flows as one "s" and one "f" event per arrow, ids renumbered from 1 in file order."""
    out, live, n = [], {}, 0
    for e in events:
        ph = e.get("ph")
        if ph == "X" and "bind_id" in e:  # flow events v2: the slice is where arrows end and start
            e = dict(e)
            b, fin, fout = e.pop("bind_id"), e.pop("flow_in", False), e.pop("flow_out", False)
            if not (fin or fout):
                raise TraceError("bind_id %r without flow_in or flow_out" % b)
            out.append(e)
            key = ("v2", b)
            if fin and key in live:
                out.append({"ph": "f", "bp": "e", "cat": "flow", "pid": e["pid"], "tid": e["tid"],
                            "ts": e["ts"], "id": live.pop(key), "name": ""})
            if fout:
                if key in live:
                    raise TraceError("flow %r starts twice without ending" % b)
                n += 1
                live[key] = n
                out.append({"ph": "s", "cat": "flow", "pid": e["pid"], "tid": e["tid"],
                            "ts": round(e["ts"] + e["dur"], 3), "id": n, "name": ""})
        elif ph in ("s", "f"):
            key = ("v1", e["id"], e.get("cat"), e.get("name"))
            e = dict(e)
            if ph == "s":
                if key in live:
                    raise TraceError("flow %r starts twice without ending" % (key,))
                n += 1
                live[key] = e["id"] = n
            elif key in live:
                e["id"] = live.pop(key)
            else:  # its start was not recorded (the trace started later): Perfetto ignores it too
                continue
            out.append(e)
        else:
            out.append(e)
    return out


def load(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:1] in (b"[", b"{"):
        events = json.loads(data)
        return split_flows(events["traceEvents"] if isinstance(events, dict) else events)
    return split_flows(load_protobuf(data))


if __name__ == "__main__":
    for e in load(sys.argv[1]):
        print(json.dumps(e, sort_keys=True))
