//! `AnswerBook`: answers collected for loops that need several reviewers (the flow's
//! `HumanLoopConfig.TaskCount`), until the last one arrives and the loop completes.
//! Plain state, no I/O; the page saves it (atomically) after every change, so answers
//! given survive a restart of the service.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::review_service::HumanAnswer;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("reviewer {reviewer:?} has already answered human loop {name:?}")]
    AlreadyAnswered { name: String, reviewer: String },
}

/// What one more answer does to a loop.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// More reviewers are needed: `have` of `needed` answers are in.
    Waiting { have: usize, needed: usize },
    /// This answer is the last one: complete the loop with all of them.
    Complete(Vec<HumanAnswer>),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnswerBook {
    /// Loop name -> answers so far (fewer than the loop needs).
    pending: BTreeMap<String, Vec<HumanAnswer>>,
}

impl AnswerBook {
    /// What adding `answer` would do, without changing the book.
    pub fn check(
        &self,
        name: &str,
        answer: &HumanAnswer,
        needed: usize,
    ) -> Result<Outcome, AnswerError> {
        let have = self.pending.get(name).map(Vec::as_slice).unwrap_or(&[]);
        if have.iter().any(|a| a.worker_id == answer.worker_id) {
            return Err(AnswerError::AlreadyAnswered {
                name: name.to_owned(),
                reviewer: answer.worker_id.clone().unwrap_or_default(),
            });
        }
        if have.len() + 1 >= needed.max(1) {
            let mut all = have.to_vec();
            all.push(answer.clone());
            Ok(Outcome::Complete(all))
        } else {
            Ok(Outcome::Waiting {
                have: have.len() + 1,
                needed,
            })
        }
    }

    /// Records an answer that leaves the loop [`Outcome::Waiting`].
    pub fn record(&mut self, name: &str, answer: HumanAnswer) {
        self.pending
            .entry(name.to_owned())
            .or_default()
            .push(answer);
    }

    /// Drops a loop's answers (it completed, or is no longer waiting for reviewers).
    pub fn forget(&mut self, name: &str) -> bool {
        self.pending.remove(name).is_some()
    }

    pub fn answered_by(&self, name: &str, reviewer: &str) -> bool {
        self.pending
            .get(name)
            .is_some_and(|v| v.iter().any(|a| a.worker_id.as_deref() == Some(reviewer)))
    }

    pub fn count(&self, name: &str) -> usize {
        self.pending.get(name).map_or(0, Vec::len)
    }

    /// Loops with answers waiting.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.pending.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(worker: &str, label: &str) -> HumanAnswer {
        let t = 1_795_597_200_000; // 2026-11-25T09:00:00Z
        HumanAnswer::classification("annotatedResult", label, worker, t, t + 1000, None)
    }

    #[test]
    fn one_reviewer_completes_a_loop_that_needs_one() {
        let book = AnswerBook::default();
        assert_eq!(
            book.check("l", &answer("ann", "pug"), 1).unwrap(),
            Outcome::Complete(vec![answer("ann", "pug")])
        );
    }

    #[test]
    fn a_loop_needing_three_completes_with_the_third_distinct_reviewer() {
        let mut book = AnswerBook::default();
        for (i, who) in ["ann", "bob"].into_iter().enumerate() {
            let a = answer(who, "pug");
            assert_eq!(
                book.check("l", &a, 3).unwrap(),
                Outcome::Waiting {
                    have: i + 1,
                    needed: 3
                }
            );
            book.record("l", a);
        }
        let err = book.check("l", &answer("bob", "beagle"), 3).unwrap_err();
        assert_eq!(
            err,
            AnswerError::AlreadyAnswered {
                name: "l".into(),
                reviewer: "bob".into()
            }
        );
        let Outcome::Complete(all) = book.check("l", &answer("cy", "beagle"), 3).unwrap() else {
            panic!("third answer completes");
        };
        let who: Vec<_> = all
            .iter()
            .map(|a| a.worker_id.as_deref().unwrap_or_default())
            .collect();
        assert_eq!(who, ["ann", "bob", "cy"]);
        assert!(book.answered_by("l", "ann") && !book.answered_by("l", "cy"));
        assert!(book.forget("l"));
        assert_eq!(book.count("l"), 0);
    }

    #[test]
    fn the_book_round_trips_through_json() {
        let mut book = AnswerBook::default();
        book.record("l", answer("ann", "pug"));
        let json = serde_json::to_string(&book).unwrap();
        assert_eq!(serde_json::from_str::<AnswerBook>(&json).unwrap(), book);
    }
}
