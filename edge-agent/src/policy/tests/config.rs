//! Parsing, defaults and validation of `[policy]`.

use super::*;

/// How the daemon embeds the policy: its own section of a larger file.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    policy: PolicyConfig,
}

fn parse(toml_text: &str) -> Result<PolicyConfig, toml::de::Error> {
    toml::from_str::<File>(toml_text).map(|f| f.policy)
}

fn model_labels() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/labels.txt");
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

fn error_of(config: PolicyConfig) -> String {
    config.validate(&labels()).unwrap_err().to_string()
}

// --- parsing ---

#[test]
fn default_config_is_valid() {
    PolicyConfig::default().validate(&labels()).unwrap();
}

#[test]
fn missing_section_and_empty_section_give_the_defaults() {
    assert_eq!(parse("").unwrap(), PolicyConfig::default());
    assert_eq!(parse("[policy]").unwrap(), PolicyConfig::default());
    assert_eq!(
        parse("[policy.near_duplicate]\nmax_hamming = 4").unwrap(),
        PolicyConfig {
            near_duplicate: NearDuplicateConfig {
                max_hamming: 4,
                ..NearDuplicateConfig::default()
            },
            ..PolicyConfig::default()
        }
    );
}

#[test]
fn example_in_the_docs_parses_validates_and_shows_the_defaults() {
    let example = parse(include_str!("../example.toml")).unwrap();
    example.validate(&model_labels()).unwrap();
    assert_eq!(
        PolicyConfig {
            labels: Default::default(),
            ..example.clone()
        },
        PolicyConfig::default()
    );
    assert_eq!(example.labels.len(), 3);
    assert_eq!(example.labels["Siberian_husky"].min_confidence, Some(0.9));
    assert!(example.labels["Doberman"].always_review);
    assert!(example.labels["pug"].never_review);
}

#[test]
fn misspelt_field_is_rejected() {
    let err = parse("[policy]\nmin_confidense = 0.5").unwrap_err();
    assert!(err.to_string().contains("min_confidense"), "{err}");
    let err = parse("[policy.labels.pug]\nnever = true").unwrap_err();
    assert!(err.to_string().contains("never"), "{err}");
    let err = parse("[policy.near_duplicate]\nwindow = 5").unwrap_err();
    assert!(err.to_string().contains("window"), "{err}");
}

#[test]
fn off_switches_optional_checks_off() {
    let config = parse(
        "[policy]\nmin_margin = \"off\"\nmax_entropy_bits = \"off\"\nmax_reviews_per_hour = \"off\"",
    )
    .unwrap();
    assert_eq!(config.min_margin, None);
    assert_eq!(config.max_entropy_bits, None);
    assert_eq!(config.max_reviews_per_hour, None);
}

#[test]
fn thresholds_may_be_written_as_integers() {
    let config = parse("[policy]\nmin_margin = 0\nmax_entropy_bits = 2").unwrap();
    assert_eq!(config.min_margin, Some(0.0));
    assert_eq!(config.max_entropy_bits, Some(2.0));
}

#[test]
fn only_numbers_or_off_are_accepted_for_optional_checks() {
    for bad in [
        "min_margin = \"none\"",
        "max_reviews_per_hour = -1",
        "max_reviews_per_hour = 5000000000",
        "max_reviews_per_hour = 1.5",
        "max_entropy_bits = true",
    ] {
        let err = parse(&format!("[policy]\n{bad}")).unwrap_err().to_string();
        assert!(err.contains("or \"off\""), "{bad}: {err}");
    }
}

#[test]
fn config_round_trips_through_toml() {
    let mut config = PolicyConfig {
        min_margin: None,
        max_entropy_bits: Some(1.25),
        audit_rate: 0.01,
        max_reviews_per_hour: None,
        ..PolicyConfig::default()
    };
    config.labels.insert(
        "pug".into(),
        LabelOverride {
            min_confidence: Some(0.5),
            always_review: true,
            never_review: false,
        },
    );
    for config in [PolicyConfig::default(), config] {
        let text = toml::to_string(&File {
            policy: config.clone(),
        })
        .unwrap();
        assert_eq!(parse(&text).unwrap(), config, "{text}");
    }
}

#[test]
fn printed_default_config_is_readable() {
    let text = toml::to_string(&File {
        policy: PolicyConfig::default(),
    })
    .unwrap();
    assert!(text.contains("min_confidence = 0.7\n"), "{text}");
    assert!(text.contains("max_entropy_bits = \"off\"\n"), "{text}");
}

// --- validation: every message names its field ---

#[test]
fn min_confidence_outside_zero_to_one_is_rejected() {
    assert_eq!(
        error_of(PolicyConfig {
            min_confidence: 1.5,
            ..PolicyConfig::default()
        }),
        "policy.min_confidence must be within 0..=1, got 1.5"
    );
    assert_eq!(
        error_of(PolicyConfig {
            min_confidence: f32::NAN,
            ..PolicyConfig::default()
        }),
        "policy.min_confidence must be within 0..=1, got NaN"
    );
}

#[test]
fn min_margin_outside_zero_to_one_is_rejected() {
    assert_eq!(
        error_of(PolicyConfig {
            min_margin: Some(-0.1),
            ..PolicyConfig::default()
        }),
        "policy.min_margin must be within 0..=1, got -0.1"
    );
}

#[test]
fn max_entropy_above_what_the_labels_allow_is_rejected() {
    assert_eq!(
        error_of(PolicyConfig {
            max_entropy_bits: Some(2.5),
            ..PolicyConfig::default()
        }),
        "policy.max_entropy_bits must be within 0..=2.000 (log2 of the model's 4 labels), got 2.5"
    );
    PolicyConfig {
        max_entropy_bits: Some(2.0),
        ..PolicyConfig::default()
    }
    .validate(&labels())
    .unwrap();
}

#[test]
fn audit_rate_outside_zero_to_one_is_rejected() {
    assert_eq!(
        error_of(PolicyConfig {
            audit_rate: 2.0,
            ..PolicyConfig::default()
        }),
        "policy.audit_rate must be within 0..=1, got 2"
    );
}

#[test]
fn zero_reviews_per_hour_is_rejected_in_favour_of_off() {
    assert_eq!(
        error_of(PolicyConfig {
            max_reviews_per_hour: Some(0),
            ..PolicyConfig::default()
        }),
        "policy.max_reviews_per_hour must be within 1..=4294967295 (or \"off\" for no limit), got 0"
    );
}

fn near_duplicate(nd: NearDuplicateConfig) -> PolicyConfig {
    PolicyConfig {
        near_duplicate: nd,
        ..PolicyConfig::default()
    }
}

#[test]
fn near_duplicate_settings_are_checked() {
    let d = NearDuplicateConfig::default;
    assert_eq!(
        error_of(near_duplicate(NearDuplicateConfig {
            max_hamming: 65,
            ..d()
        })),
        "policy.near_duplicate.max_hamming must be within 0..=64, got 65"
    );
    assert_eq!(
        error_of(near_duplicate(NearDuplicateConfig {
            window_secs: 0,
            ..d()
        })),
        "policy.near_duplicate.window_secs must be within 1.. (or enabled = false), got 0"
    );
    for n in [0, MAX_REMEMBERED_LIMIT + 1] {
        assert_eq!(
            error_of(near_duplicate(NearDuplicateConfig {
                max_remembered: n,
                ..d()
            })),
            format!("policy.near_duplicate.max_remembered must be within 1..=100000, got {n}")
        );
    }
}

#[test]
fn disabled_near_duplicate_check_ignores_its_sizes() {
    near_duplicate(NearDuplicateConfig {
        enabled: false,
        window_secs: 0,
        max_remembered: 0,
        ..NearDuplicateConfig::default()
    })
    .validate(&labels())
    .unwrap();
}

fn with_override(label: &str, rule: LabelOverride) -> PolicyConfig {
    PolicyConfig {
        labels: [(label.to_string(), rule)].into(),
        ..PolicyConfig::default()
    }
}

#[test]
fn override_for_an_unknown_label_is_rejected_listing_the_labels() {
    assert_eq!(
        error_of(with_override("Husky", LabelOverride::default())),
        "policy.labels.Husky: \"Husky\" is not a label of the model \
         (its labels: husky, pug, poodle, corgi)"
    );
}

#[test]
fn label_needing_quotes_is_quoted_in_the_field_path() {
    assert_eq!(
        error_of(with_override("great dane", LabelOverride::default())),
        "policy.labels.\"great dane\": \"great dane\" is not a label of the model \
         (its labels: husky, pug, poodle, corgi)"
    );
}

#[test]
fn label_min_confidence_outside_zero_to_one_is_rejected() {
    assert_eq!(
        error_of(with_override(
            "pug",
            LabelOverride {
                min_confidence: Some(1.2),
                ..LabelOverride::default()
            }
        )),
        "policy.labels.pug.min_confidence must be within 0..=1, got 1.2"
    );
}

#[test]
fn label_both_always_and_never_reviewed_is_rejected() {
    assert_eq!(
        error_of(with_override(
            "pug",
            LabelOverride {
                always_review: true,
                never_review: true,
                ..LabelOverride::default()
            }
        )),
        "policy.labels.pug sets both always_review and never_review; keep one"
    );
}

#[test]
fn model_without_labels_is_rejected() {
    assert_eq!(
        PolicyConfig::default().validate(&[]),
        Err(PolicyError::NoLabels)
    );
}
