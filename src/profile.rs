//! `--profile FILE`: the build's timeline in Chrome's trace event format, which Perfetto
//! (ui.perfetto.dev) and `chrome://tracing` open.
//!
//! One complete event (`"ph": "X"`) per node that took part (ran, cached, restored or
//! failed; skipped nodes did nothing) and per batch item, plus one per attempt. Complete
//! events on one thread must nest, so intervals are packed into lanes (each a `tid`,
//! named by a metadata event) where none overlaps another.

use crate::executor::{NodeReport, Status};
use crate::timeline::Timeline;
use serde_json::{json, Value};

/// The process id every event carries (one build, one process in the viewer).
const PID: u32 = 1;
/// The lane of the attempts themselves; nodes and items start at 1.
const ATTEMPT_LANE: usize = 0;

/// An interval to place: when, and its event without `tid`.
struct Placed {
    start: u64,
    end: u64,
    event: Value,
}

/// The trace document.
pub fn trace(t: &Timeline, workflow: &str) -> Value {
    let mut placed: Vec<Placed> = Vec::new();
    let mut events: Vec<Value> = Vec::new();
    for (n, attempt) in t.attempts.iter().enumerate() {
        events.push(json!({
            "name": format!("attempt {}", n + 1), "cat": "attempt", "ph": "X",
            "ts": attempt.offset_us, "dur": attempt.duration_us,
            "pid": PID, "tid": ATTEMPT_LANE,
            "args": {"success": attempt.success, "nodes": attempt.nodes.len()},
        }));
        for node in attempt.nodes.iter().filter(|r| r.status != Status::Skipped) {
            placed.push(node_event(node, attempt.offset_us, n + 1));
            for item in &node.items {
                let start = attempt.offset_us + item.start_us;
                let end = attempt.offset_us + item.end_us.max(item.start_us);
                placed.push(Placed {
                    start,
                    end,
                    event: json!({
                        "name": format!("{}[{}]", node.id, item.index), "cat": "item", "ph": "X",
                        "ts": start, "dur": end - start, "pid": PID,
                        "args": {"node": node.id, "index": item.index, "status": item.status.as_str()},
                    }),
                });
            }
        }
    }
    let lanes = pack(&mut placed);
    events.extend(placed.into_iter().map(|p| p.event));
    let mut meta = vec![
        json!({"name": "process_name", "ph": "M", "pid": PID, "tid": ATTEMPT_LANE,
               "args": {"name": format!("pflow build {workflow}")}}),
        json!({"name": "thread_name", "ph": "M", "pid": PID, "tid": ATTEMPT_LANE,
               "args": {"name": "attempts"}}),
    ];
    for lane in 1..=lanes {
        meta.push(
            json!({"name": "thread_name", "ph": "M", "pid": PID, "tid": lane,
                         "args": {"name": format!("lane {lane}")}}),
        );
    }
    meta.extend(events);
    json!({
        "traceEvents": meta,
        "displayTimeUnit": "ms",
        "otherData": {"run_id": t.run_id, "workflow": workflow},
    })
}

fn node_event(node: &NodeReport, offset_us: u64, attempt: usize) -> Placed {
    let start = offset_us + node.start_us;
    let end = offset_us + node.end_us.max(node.start_us);
    let mut args = json!({
        "status": node.status.as_str(),
        "type": node.node_type,
        "attempt": attempt,
        "executions": node.executions,
        "reason": node.reason,
    });
    if let Some(key) = node.key {
        args["key"] = json!(key.hex());
    }
    if let Some(e) = &node.error {
        args["error"] = json!(format!("[{}] {}", e.category, e.message));
    }
    Placed {
        start,
        end,
        event: json!({
            "name": node.id, "cat": "node", "ph": "X",
            "ts": start, "dur": end - start, "pid": PID, "args": args,
        }),
    }
}

/// Give each interval a lane (`tid` from 1) where it overlaps no other, using as few
/// lanes as the most that run at once; returns how many lanes there are.
fn pack(placed: &mut [Placed]) -> usize {
    placed.sort_by_key(|p| (p.start, std::cmp::Reverse(p.end)));
    // Each lane's end so far.
    let mut lanes: Vec<u64> = Vec::new();
    for p in placed.iter_mut() {
        let lane = match lanes.iter().position(|&end| end <= p.start) {
            Some(l) => l,
            None => {
                lanes.push(0);
                lanes.len() - 1
            }
        };
        lanes[lane] = p.end;
        p.event["tid"] = json!(lane + 1);
    }
    lanes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed(start: u64, end: u64) -> Placed {
        Placed {
            start,
            end,
            event: json!({}),
        }
    }

    #[test]
    fn overlapping_intervals_get_different_lanes_and_lanes_are_reused() {
        let mut p = vec![placed(0, 10), placed(5, 8), placed(10, 20), placed(9, 12)];
        assert_eq!(pack(&mut p), 2);
        let lane_of = |s: u64| {
            p.iter()
                .find(|x| x.start == s)
                .map(|x| x.event["tid"].as_u64().unwrap())
                .unwrap()
        };
        assert_ne!(lane_of(0), lane_of(5));
        assert_ne!(lane_of(9), lane_of(10));
    }
}
