//! The daemon's counters since start, shared by the frame thread and the MQTT driver,
//! and the frames' outcomes by why; both go into the retained status.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use protocol::status::{AgentCounters, FrameOutcomes};

/// Counters since start, shared by the frame thread and the MQTT driver.
#[derive(Debug, Default)]
pub struct Stats {
    pub frames: AtomicU64,
    pub selected: AtomicU64,
    pub suppressed: AtomicU64,
    pub sent: AtomicU64,
    pub resent: AtomicU64,
    pub receipted: AtomicU64,
    pub rejected: AtomicU64,
    /// Events taken out of delivery and kept aside (rejected, refused, unsendable).
    pub set_aside: AtomicU64,
    pub errors: AtomicU64,
    /// The frames' outcomes by why, for the status.
    pub outcomes: Mutex<FrameOutcomes>,
}

impl Stats {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn counters(&self) -> AgentCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        AgentCounters {
            frames: get(&self.frames),
            selected: get(&self.selected),
            suppressed: get(&self.suppressed),
            sent: get(&self.sent),
            receipted: get(&self.receipted),
            errors: get(&self.errors),
        }
    }

    /// Counts one frame's outcome under `key` in `pick`'s map.
    pub fn count_outcome(
        &self,
        pick: impl FnOnce(&mut FrameOutcomes) -> &mut BTreeMap<String, u64>,
        key: &str,
    ) {
        let mut outcomes = self.outcomes.lock().unwrap();
        *pick(&mut outcomes).entry(key.to_owned()).or_insert(0) += 1;
    }
}
