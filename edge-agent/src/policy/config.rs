//! The `[policy]` section of the agent's configuration and its validation.
//!
//! Every default comes from a named function, used both by serde (a field left out of
//! the file) and by `Default` (the whole section left out), so the two cannot drift.
//!
//! TOML has no null, so an optional threshold whose default is on (`min_margin`,
//! `max_reviews_per_hour`) could not be switched off if it were a plain `Option`.
//! Such fields take either a number or the string `"off"`, and `None` is written back
//! as `"off"`, so a printed default config reads back as the same config.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Review policy settings: when a classified frame goes to a human.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// A top-1 score below this selects the frame (`LowConfidence`). Within 0..=1.
    #[serde(default = "default_min_confidence")]
    pub min_confidence: f32,
    /// A gap between the top-1 and top-2 scores below this selects the frame
    /// (`SmallMargin`). Within 0..=1; `None` (`"off"`) disables the check.
    #[serde(default = "default_min_margin", with = "number_or_off")]
    pub min_margin: Option<f32>,
    /// A Shannon entropy of the scores (bits) above this selects the frame
    /// (`HighEntropy`). Within 0..=log2(number of labels); `None` disables the check.
    #[serde(default = "default_max_entropy_bits", with = "number_or_off")]
    pub max_entropy_bits: Option<f32>,
    /// Fraction of otherwise-confident frames sent anyway (`Audit`). Within 0..=1.
    #[serde(default = "default_audit_rate")]
    pub audit_rate: f64,
    /// Seed of the audit sample: the same seed and the same frames give the same sample.
    #[serde(default = "default_audit_seed")]
    pub audit_seed: u64,
    /// At most this many frames are sent in any sliding hour; `None` for no limit.
    #[serde(default = "default_max_reviews_per_hour", with = "number_or_off")]
    pub max_reviews_per_hour: Option<u32>,
    /// Suppression of frames that look like one sent shortly before.
    #[serde(default)]
    pub near_duplicate: NearDuplicateConfig,
    /// Per-label overrides, keyed by a label of the model.
    #[serde(default)]
    pub labels: BTreeMap<String, LabelOverride>,
}

/// Per-label settings that take precedence over the global ones.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelOverride {
    /// Replaces `min_confidence` when this label is the top-1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_confidence: Option<f32>,
    /// Every frame whose top-1 is this label is sent (`AlwaysReviewLabel`).
    #[serde(default)]
    pub always_review: bool,
    /// No frame whose top-1 is this label is sent, not even for an audit.
    #[serde(default)]
    pub never_review: bool,
}

/// Settings of the near-duplicate suppression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NearDuplicateConfig {
    /// Whether near-duplicates are suppressed at all.
    #[serde(default = "default_near_duplicate_enabled")]
    pub enabled: bool,
    /// Largest Hamming distance (of 64 bits) between perceptual hashes that still
    /// counts as the same scene.
    #[serde(default = "default_max_hamming")]
    pub max_hamming: u32,
    /// How long a sent frame suppresses its look-alikes, in seconds.
    #[serde(default = "default_window_secs")]
    pub window_secs: u64,
    /// How many sent frames are remembered at most (the oldest is forgotten first).
    #[serde(default = "default_max_remembered")]
    pub max_remembered: usize,
}

/// Default of [`PolicyConfig::min_confidence`].
pub fn default_min_confidence() -> f32 {
    0.7
}
/// Default of [`PolicyConfig::min_margin`].
pub fn default_min_margin() -> Option<f32> {
    Some(0.15)
}
/// Default of [`PolicyConfig::max_entropy_bits`].
pub fn default_max_entropy_bits() -> Option<f32> {
    None
}
/// Default of [`PolicyConfig::audit_rate`]: no audit.
pub fn default_audit_rate() -> f64 {
    0.0
}
/// Default of [`PolicyConfig::audit_seed`].
pub fn default_audit_seed() -> u64 {
    1729
}
/// Default of [`PolicyConfig::max_reviews_per_hour`].
pub fn default_max_reviews_per_hour() -> Option<u32> {
    Some(600)
}
/// Default of [`NearDuplicateConfig::enabled`].
pub fn default_near_duplicate_enabled() -> bool {
    true
}
/// Default of [`NearDuplicateConfig::max_hamming`].
pub fn default_max_hamming() -> u32 {
    6
}
/// Default of [`NearDuplicateConfig::window_secs`].
pub fn default_window_secs() -> u64 {
    600
}
/// Default of [`NearDuplicateConfig::max_remembered`].
pub fn default_max_remembered() -> usize {
    1024
}

/// Upper bound of [`NearDuplicateConfig::max_remembered`]: 16 bytes a frame, and a
/// linear scan per candidate frame that stays well under a millisecond.
pub const MAX_REMEMBERED_LIMIT: usize = 100_000;

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            min_confidence: default_min_confidence(),
            min_margin: default_min_margin(),
            max_entropy_bits: default_max_entropy_bits(),
            audit_rate: default_audit_rate(),
            audit_seed: default_audit_seed(),
            max_reviews_per_hour: default_max_reviews_per_hour(),
            near_duplicate: NearDuplicateConfig::default(),
            labels: BTreeMap::new(),
        }
    }
}

impl Default for NearDuplicateConfig {
    fn default() -> Self {
        Self {
            enabled: default_near_duplicate_enabled(),
            max_hamming: default_max_hamming(),
            window_secs: default_window_secs(),
            max_remembered: default_max_remembered(),
        }
    }
}

/// A policy configuration that cannot work with the model it is meant for.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// A number outside its allowed range (NaN included).
    #[error("{field} must be within {range}, got {got}")]
    OutOfRange {
        /// Dotted path of the field, e.g. `policy.min_confidence`.
        field: String,
        /// The allowed range, as written in the message.
        range: String,
        /// The offending value.
        got: String,
    },
    /// A per-label override for a label the model does not have.
    #[error("{field}: {label:?} is not a label of the model (its labels: {known})")]
    UnknownLabel {
        /// Dotted path of the override, e.g. `policy.labels.husky`.
        field: String,
        /// The unknown label.
        label: String,
        /// The model's labels, comma-separated.
        known: String,
    },
    /// A per-label override that asks for both `always_review` and `never_review`.
    #[error("{field} sets both always_review and never_review; keep one")]
    ConflictingLabelOverride {
        /// Dotted path of the override.
        field: String,
    },
    /// The model has no labels, so no score can be interpreted.
    #[error("the model has no labels; the review policy needs at least one")]
    NoLabels,
}

impl PolicyConfig {
    /// Checks every field, and the label overrides against the model's `labels`.
    /// The first problem found is returned, naming its field.
    pub fn validate(&self, labels: &[String]) -> Result<(), PolicyError> {
        if labels.is_empty() {
            return Err(PolicyError::NoLabels);
        }
        unit_interval("policy.min_confidence", self.min_confidence)?;
        if let Some(margin) = self.min_margin {
            unit_interval("policy.min_margin", margin)?;
        }
        if let Some(bits) = self.max_entropy_bits {
            // Above log2(n) the check could never fire: most likely a misunderstanding.
            let max = (labels.len() as f64).log2();
            if !(0.0..=max).contains(&f64::from(bits)) {
                return Err(out_of_range(
                    "policy.max_entropy_bits",
                    format!("0..={max:.3} (log2 of the model's {} labels)", labels.len()),
                    bits,
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.audit_rate) {
            return Err(out_of_range("policy.audit_rate", "0..=1", self.audit_rate));
        }
        if self.max_reviews_per_hour == Some(0) {
            return Err(out_of_range(
                "policy.max_reviews_per_hour",
                "1..=4294967295 (or \"off\" for no limit)",
                0,
            ));
        }
        self.near_duplicate.validate()?;
        for (label, rule) in &self.labels {
            let field = format!("policy.labels.{}", toml_key(label));
            if !labels.contains(label) {
                return Err(PolicyError::UnknownLabel {
                    field,
                    label: label.clone(),
                    known: labels.join(", "),
                });
            }
            if let Some(min) = rule.min_confidence {
                unit_interval(&format!("{field}.min_confidence"), min)?;
            }
            if rule.always_review && rule.never_review {
                return Err(PolicyError::ConflictingLabelOverride { field });
            }
        }
        Ok(())
    }
}

impl NearDuplicateConfig {
    fn validate(&self) -> Result<(), PolicyError> {
        if self.max_hamming > 64 {
            return Err(out_of_range(
                "policy.near_duplicate.max_hamming",
                "0..=64",
                self.max_hamming,
            ));
        }
        if self.enabled && self.window_secs == 0 {
            return Err(out_of_range(
                "policy.near_duplicate.window_secs",
                "1.. (or enabled = false)",
                0,
            ));
        }
        if self.enabled && !(1..=MAX_REMEMBERED_LIMIT).contains(&self.max_remembered) {
            return Err(out_of_range(
                "policy.near_duplicate.max_remembered",
                format!("1..={MAX_REMEMBERED_LIMIT}"),
                self.max_remembered,
            ));
        }
        Ok(())
    }
}

fn unit_interval(field: &str, value: f32) -> Result<(), PolicyError> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(out_of_range(field, "0..=1", value))
    }
}

fn out_of_range(field: &str, range: impl Into<String>, got: impl fmt::Display) -> PolicyError {
    PolicyError::OutOfRange {
        field: field.to_owned(),
        range: range.into(),
        got: got.to_string(),
    }
}

/// A label as a TOML key: bare when it can be, quoted otherwise.
fn toml_key(label: &str) -> String {
    let bare = !label.is_empty()
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        label.to_owned()
    } else {
        format!("{label:?}")
    }
}

/// Serde adapter for `Option<number>` fields: a number, or the string `"off"` for `None`.
mod number_or_off {
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::{self, Unexpected, Visitor};
    use serde::{Deserializer, Serialize, Serializer};

    const OFF: &str = "off";

    /// A number type that a TOML integer or float may become.
    pub(super) trait Number: Sized + Serialize {
        const EXPECTING: &'static str;
        fn from_i64(v: i64) -> Option<Self>;
        fn from_f64(v: f64) -> Option<Self>;
    }

    impl Number for f32 {
        const EXPECTING: &'static str = "a number or \"off\"";
        fn from_i64(v: i64) -> Option<Self> {
            Some(v as f32)
        }
        fn from_f64(v: f64) -> Option<Self> {
            Some(v as f32)
        }
    }

    impl Number for u32 {
        const EXPECTING: &'static str = "a whole number or \"off\"";
        fn from_i64(v: i64) -> Option<Self> {
            u32::try_from(v).ok()
        }
        fn from_f64(_: f64) -> Option<Self> {
            None
        }
    }

    pub(super) fn serialize<T: Number, S: Serializer>(
        value: &Option<T>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => v.serialize(serializer),
            None => serializer.serialize_str(OFF),
        }
    }

    pub(super) fn deserialize<'de, T: Number, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<T>, D::Error> {
        deserializer.deserialize_any(NumberOrOff(PhantomData))
    }

    struct NumberOrOff<T>(PhantomData<T>);

    impl<T: Number> Visitor<'_> for NumberOrOff<T> {
        type Value = Option<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(T::EXPECTING)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            T::from_i64(v)
                .map(Some)
                .ok_or_else(|| E::invalid_value(Unexpected::Signed(v), &self))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            i64::try_from(v)
                .ok()
                .and_then(T::from_i64)
                .map(Some)
                .ok_or_else(|| E::invalid_value(Unexpected::Unsigned(v), &self))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            T::from_f64(v)
                .map(Some)
                .ok_or_else(|| E::invalid_value(Unexpected::Float(v), &self))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            if v == OFF {
                Ok(None)
            } else {
                Err(E::invalid_value(Unexpected::Str(v), &self))
            }
        }
    }
}
