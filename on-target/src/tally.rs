//! What the replay counts: steps and mismatches per machine, faults, and the
//! step counts the image promises; the first mismatches printed in full.
use core::fmt::Debug;

use semihosting::println;

/// Mismatches printed in full; later ones are only counted.
const PRINTED: u32 = 20;

/// Steps and mismatches per machine, faults, and the counts the image promises.
pub(crate) struct Tally {
    rows: [(&'static str, u32, u32); 9],
    faults: u32,
    /// The image's `Record::Counts`: (steps, of which also through `AtomicGcra`).
    expected: Option<(u32, u32)>,
    printed: u32,
}

impl Tally {
    pub(crate) fn new() -> Tally {
        let names = [
            "gcra",
            "atomic_gcra",
            "sliding_log",
            "sliding_counter",
            "budget",
            "policy",
            "keyed",
            "model_quota",
            "backoff",
        ];
        Tally {
            rows: names.map(|n| (n, 0, 0)),
            faults: 0,
            expected: None,
            printed: 0,
        }
    }

    /// Counts one step of `machine`, a mismatch if `ok` is false.
    pub(crate) fn step(&mut self, machine: &str, ok: bool) {
        match self.rows.iter_mut().find(|r| r.0 == machine) {
            Some(row) => {
                row.1 += 1;
                row.2 += u32::from(!ok);
            }
            None => self.fault("a step of a machine the replay does not know"),
        }
    }

    /// Counts a fault that is no step's result (an unreadable image, a step
    /// without a trace or of another machine).
    pub(crate) fn fault(&mut self, what: &str) {
        println!("FAULT {what}");
        self.faults += 1;
    }

    /// Records the image's step counts (its last record).
    pub(crate) fn expect_counts(&mut self, steps: u32, atomic_steps: u32) {
        self.expected = Some((steps, atomic_steps));
    }

    pub(crate) fn lines(&self) -> impl Iterator<Item = (&'static str, u32, u32)> + '_ {
        self.rows.iter().copied()
    }

    pub(crate) fn steps(&self) -> u32 {
        self.rows.iter().map(|r| r.1).sum()
    }

    pub(crate) fn mismatches(&self) -> u32 {
        self.rows.iter().map(|r| r.2).sum()
    }

    /// No mismatch, no fault, and every step the image holds replayed (each
    /// GCRA step whose rate `AtomicGcra` takes twice).
    pub(crate) fn passed(&self) -> bool {
        let Some((steps, atomic)) = self.expected else {
            println!("FAULT the image ends without its step counts");
            return false;
        };
        let ran = self.steps() - self.rows[1].1;
        if (ran, self.rows[1].1) != (steps, atomic) {
            println!(
                "FAULT replayed {ran} steps and {} through AtomicGcra; the image holds {steps} and {atomic}",
                self.rows[1].1
            );
            return false;
        }
        self.faults == 0 && self.mismatches() == 0
    }

    /// Compares one value of a step; prints the first mismatches in full.
    pub(crate) fn same<T: PartialEq + Debug>(
        &mut self,
        at: &At<'_>,
        what: &str,
        expected: &T,
        got: &T,
    ) -> bool {
        let same = expected == got;
        if !same && self.printed < PRINTED {
            self.printed += 1;
            println!(
                "MISMATCH {}/{} step {} ({what}):\n  expected {expected:?}\n  got      {got:?}",
                at.machine, at.trace, at.step
            );
        }
        same
    }
}

/// Where a step is, for messages.
pub(crate) struct At<'a> {
    pub(crate) machine: &'a str,
    pub(crate) trace: &'a str,
    pub(crate) step: u32,
}
