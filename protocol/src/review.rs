//! The review result the relay may publish on `{prefix}/{device}/reviews` once
//! reviewers have answered: the consolidated label for one event, so a device (or
//! its owner) learns what the frame really showed. Optional: nothing depends on it
//! arriving.
//!
//! ```json
//! {"v":1,"event_id":"01936f0e-7c4a-7b1e-9f3a-2d4c5b6a7e8f","label":"beagle",
//!  "class_index":4,"agreement":1.0,"human_loop_name":"ea2i-01936f0e-7c4a-7b1e-9f3a-2d4c5b6a7e8f"}
//! ```
//!
//! `class_index` is `null` when the label is not one of the model's classes, which
//! is the case for [`crate::a2i::NONE_OF_THESE`].

use serde::{Deserialize, Serialize};

use crate::event::{is_valid_human_loop_name, EventId};
use crate::json::{check_v, from_json_versioned, MessageError};

/// Format version of `ReviewResult`.
pub const REVIEW_VERSION: u32 = 1;
const MESSAGE: &str = "review result";

/// Relay -> agent: what the reviewers decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewResult {
    pub v: u32,
    pub event_id: EventId,
    pub label: String,
    /// Index of `label` in the model's labels; `None` for a label outside them.
    pub class_index: Option<u32>,
    /// Fraction of reviewers who chose `label` (0..=1).
    pub agreement: f64,
    pub human_loop_name: String,
}

impl ReviewResult {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("ReviewResult serializes: plain fields and string keys")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, MessageError> {
        let review: ReviewResult = from_json_versioned(bytes, MESSAGE, REVIEW_VERSION)?;
        review.validate()?;
        Ok(review)
    }

    pub fn validate(&self) -> Result<(), MessageError> {
        check_v(MESSAGE, self.v, REVIEW_VERSION)?;
        if self.label.is_empty() {
            return Err(MessageError::invalid(MESSAGE, "label", "is empty"));
        }
        if !(0.0..=1.0).contains(&self.agreement) {
            let problem = format!("{} is not between 0 and 1", self.agreement);
            return Err(MessageError::invalid(MESSAGE, "agreement", problem));
        }
        if !is_valid_human_loop_name(&self.human_loop_name) {
            let problem = format!(
                "{:?} is not a valid A2I human loop name",
                self.human_loop_name
            );
            return Err(MessageError::invalid(MESSAGE, "human_loop_name", problem));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::human_loop_name;
    use serde_json::json;

    const ID: &str = "01936f0e-7c4a-7b1e-9f3a-2d4c5b6a7e8f";

    fn review() -> ReviewResult {
        let event_id = EventId::parse(ID).unwrap();
        ReviewResult {
            v: REVIEW_VERSION,
            event_id,
            label: "beagle".into(),
            class_index: Some(4),
            agreement: 2.0 / 3.0,
            human_loop_name: human_loop_name(&event_id),
        }
    }

    #[test]
    fn a_review_result_round_trips_with_the_documented_fields() {
        let json: serde_json::Value = serde_json::from_slice(&review().to_json()).unwrap();
        assert_eq!(json["label"], "beagle");
        assert_eq!(json["class_index"], 4);
        assert_eq!(json["human_loop_name"], format!("ea2i-{ID}"));
        assert_eq!(
            ReviewResult::from_json(&review().to_json()).unwrap(),
            review()
        );
    }

    #[test]
    fn none_of_these_has_no_class_index() {
        let r = ReviewResult {
            label: crate::a2i::NONE_OF_THESE.into(),
            class_index: None,
            ..review()
        };
        let json: serde_json::Value = serde_json::from_slice(&r.to_json()).unwrap();
        assert_eq!(json["class_index"], serde_json::Value::Null);
        assert_eq!(ReviewResult::from_json(&r.to_json()).unwrap(), r);
    }

    #[test]
    fn malformed_review_results_say_what_is_wrong() {
        let parse = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut json = serde_json::to_value(review()).unwrap();
            edit(&mut json);
            ReviewResult::from_json(json.to_string().as_bytes())
                .unwrap_err()
                .to_string()
        };
        assert!(parse(&|j| j["v"] = 9.into()).contains("version 9 is not supported"));
        assert_eq!(
            parse(&|j| j["agreement"] = json!(1.5)),
            "review result: field `agreement` 1.5 is not between 0 and 1"
        );
        assert_eq!(
            parse(&|j| j["label"] = json!("")),
            "review result: field `label` is empty"
        );
        assert!(parse(&|j| j["human_loop_name"] = json!("UPPER")).contains("`human_loop_name`"));
        assert!(parse(&|j| drop(j.as_object_mut().unwrap().remove("label")))
            .contains("missing field `label`"));
    }
}
