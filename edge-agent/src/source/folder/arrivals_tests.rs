//! The arrival rule as a specification: each writer's sequence of inotify events, with
//! time and file stamps given, and when its file is taken.

use std::ffi::{OsStr, OsString};
use std::time::{Duration, Instant};

use super::{Arrivals, FileStamp, Signal};

const SETTLE: Duration = Duration::from_millis(1000);

fn stamp(size: u64) -> FileStamp {
    FileStamp {
        dev: 1,
        ino: 7,
        size,
        mtime_ns: size as i128,
    }
}

/// A folder with one file, `a.jpg`, whose current size the test sets.
struct Folder {
    arrivals: Arrivals,
    t0: Instant,
    size: Option<u64>,
}

impl Folder {
    fn new() -> Self {
        Folder {
            arrivals: Arrivals::new(SETTLE),
            t0: Instant::now(),
            size: Some(0),
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn event(&mut self, ms: u64, signal: Signal) {
        let now = self.at(ms);
        self.arrivals
            .note(OsStr::new("a.jpg"), signal, self.size.map(stamp), now);
    }

    /// What is taken when the source looks at `ms`.
    fn look(&mut self, ms: u64) -> Vec<OsString> {
        let size = self.size;
        self.arrivals.take_due(self.at(ms), |_| size.map(stamp))
    }

    fn taken_at(&mut self, ms: u64) -> bool {
        !self.look(ms).is_empty()
    }
}

#[test]
fn cp_or_curl_one_open_write_close_is_taken_once_settled() {
    let mut f = Folder::new();
    f.event(0, Signal::Created);
    f.event(0, Signal::Opened);
    f.size = Some(5000);
    f.event(300, Signal::ClosedWrite);
    assert!(!f.taken_at(1200), "not before settle after the close");
    assert!(f.taken_at(1300));
    assert!(!f.arrivals.is_pending(OsStr::new("a.jpg")));
}

#[test]
fn a_file_still_open_for_writing_is_never_taken_however_long_it_is_still() {
    let mut f = Folder::new();
    f.event(0, Signal::Created);
    f.event(0, Signal::Opened);
    f.size = Some(10);
    for ms in [1000, 5000, 60_000, 600_000] {
        assert!(!f.taken_at(ms), "taken at {ms} while open");
    }
    f.event(600_100, Signal::ClosedWrite);
    assert!(f.taken_at(601_100));
}

#[test]
fn a_writer_that_closes_reopens_and_appends_is_taken_once_after_its_last_close() {
    let mut f = Folder::new();
    f.event(0, Signal::Created);
    f.event(0, Signal::Opened);
    f.size = Some(100);
    f.event(10, Signal::ClosedWrite);
    // Reopened within settle; appends slowly, past the first close's due time.
    f.event(400, Signal::Opened);
    assert!(!f.taken_at(1010), "open again: not taken");
    f.size = Some(150);
    assert!(!f.taken_at(2100));
    f.size = Some(200);
    f.event(2500, Signal::ClosedWrite);
    assert!(!f.taken_at(3000));
    assert!(f.taken_at(3500));
}

#[test]
fn a_file_that_changes_without_events_is_taken_only_once_it_stops_changing() {
    let mut f = Folder::new();
    f.size = Some(1);
    f.event(0, Signal::ClosedWrite);
    f.size = Some(2); // written through a descriptor opened before it became pending
    assert!(!f.taken_at(1000));
    assert!(!f.taken_at(1500), "re-armed at 1000 with the new stamp");
    assert!(f.taken_at(2000));
}

#[test]
fn renamed_in_and_linked_in_files_are_taken_at_once() {
    for signal in [Signal::MovedIn, Signal::Linked] {
        let mut f = Folder::new();
        f.size = Some(10);
        f.event(0, signal);
        assert!(f.taken_at(0), "{signal:?}");
    }
}

#[test]
fn a_created_name_that_nobody_opened_is_a_link_and_is_taken_once_settled() {
    // `ln` where the other name was removed before the agent looked.
    let mut f = Folder::new();
    f.size = Some(10);
    f.event(0, Signal::Created);
    assert!(!f.taken_at(999));
    assert!(f.taken_at(1000));
}

#[test]
fn a_reader_postpones_a_file_only_while_it_holds_it_open() {
    let mut f = Folder::new();
    f.size = Some(10);
    f.event(0, Signal::ClosedWrite);
    f.event(500, Signal::Opened);
    assert!(!f.taken_at(1000));
    f.event(1200, Signal::ClosedRead);
    assert!(f.taken_at(2000), "looked at again one settle after 1000");
}

#[test]
fn closes_never_count_below_zero() {
    let mut f = Folder::new();
    f.size = Some(10);
    f.event(0, Signal::ClosedWrite);
    f.event(10, Signal::ClosedRead); // a reader that opened before: not counted
    f.event(20, Signal::ClosedRead);
    f.event(30, Signal::Opened);
    f.event(40, Signal::ClosedRead);
    assert!(f.taken_at(1000));
}

#[test]
fn a_name_that_vanished_is_forgotten() {
    let mut f = Folder::new();
    f.size = Some(10);
    f.event(0, Signal::ClosedWrite);
    f.size = None;
    assert!(!f.taken_at(1000));
    assert_eq!(f.arrivals.next_due(), None);
}

#[test]
fn opens_and_closes_of_names_not_pending_are_ignored() {
    let mut f = Folder::new();
    f.event(0, Signal::Opened);
    f.event(0, Signal::ClosedRead);
    assert_eq!(f.arrivals.next_due(), None);
}

#[test]
fn due_names_come_out_in_the_order_they_became_due() {
    let mut a = Arrivals::new(SETTLE);
    let t0 = Instant::now();
    for (ms, name) in [(30, "c.jpg"), (10, "a.jpg"), (20, "b.jpg")] {
        a.note(
            OsStr::new(name),
            Signal::ClosedWrite,
            Some(stamp(1)),
            t0 + Duration::from_millis(ms),
        );
    }
    assert_eq!(a.next_due(), Some(t0 + Duration::from_millis(1010)));
    let taken = a.take_due(t0 + Duration::from_secs(5), |_| Some(stamp(1)));
    assert_eq!(taken, ["a.jpg", "b.jpg", "c.jpg"]);
}
