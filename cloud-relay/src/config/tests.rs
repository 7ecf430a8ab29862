//! The config's parsing, defaults and validation.

use super::*;

fn minimal() -> String {
    r#"
[mqtt]
host = "127.0.0.1"
client_id = "relay-1"
[s3]
bucket = "edge-a2i"
[a2i]
flow_definition_arn = "arn:aws:sagemaker:us-east-1:000000000000:flow-definition/dogs"
[model]
labels = ["beagle", "pug"]
"#
    .to_owned()
}

#[test]
fn the_annotated_default_config_parses_and_validates() {
    let c = Config::parse(DEFAULT_CONFIG).unwrap();
    c.validate().unwrap();
    assert_eq!(c.mqtt.port, 8883);
    assert_eq!(c.intake.workers, 16);
    assert!(c.stages_chunks(), "the default config shares the load");
}

#[test]
fn a_minimal_config_gets_defaults() {
    let c = Config::parse(&minimal()).unwrap();
    c.validate().unwrap();
    assert_eq!(c.mqtt.session_expiry, Duration::from_secs(86400));
    assert_eq!(c.s3.images_prefix, "events");
    assert_eq!(c.results.label_attribute, "label");
    assert!(!c.stages_chunks());
    assert_eq!(c.review_labels(), ["beagle", "pug", "none of these"]);
}

#[test]
fn the_old_spelling_of_a_renamed_setting_is_read_and_named() {
    let old = minimal().replace(
        "client_id = \"relay-1\"",
        "client_id = \"relay-1\"\nmax_inflight = 7",
    );
    assert_eq!(Config::parse(&old).unwrap().mqtt.max_in_flight, 7);
    let warnings = protocol::renamed::renamed_keys(&old, RENAMED);
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("mqtt.max_in_flight"), "{warnings:?}");
    let both = old.replace("max_inflight = 7", "max_inflight = 7\nmax_in_flight = 8");
    let e = Config::parse(&both).unwrap_err().to_string();
    assert!(
        e.contains("duplicate field"),
        "both spellings at once are refused: {e}"
    );
    let new = minimal().replace(
        "client_id = \"relay-1\"",
        "client_id = \"relay-1\"\nmax_in_flight = 7",
    );
    assert!(protocol::renamed::renamed_keys(&new, RENAMED).is_empty());
}

#[test]
fn unknown_keys_are_refused_with_their_name() {
    let text = minimal().replace("[s3]", "[s3]\nbuckt = \"x\"");
    let e = Config::parse(&text).unwrap_err().to_string();
    assert!(e.contains("unknown field `buckt`"), "{e}");
}

#[test]
fn invalid_values_name_their_key() {
    let cases = [
        (
            "bucket = \"edge-a2i\"",
            "bucket = \"Edge_A2I\"",
            "s3.bucket",
        ),
        (
            "labels = [\"beagle\", \"pug\"]",
            "labels = []",
            "model.labels",
        ),
        (
            "labels = [\"beagle\", \"pug\"]",
            "labels = [\"pug\", \"pug\"]",
            "model.labels",
        ),
        (
            "flow-definition/dogs",
            "human-task-ui/dogs",
            "a2i.flow_definition_arn",
        ),
        (
            "client_id = \"relay-1\"",
            "client_id = \"a b\"",
            "mqtt.client_id",
        ),
        // The flow definition in another region than the A2I calls go to.
        ("sagemaker:us-east-1:", "sagemaker:eu-west-1:", "a2i.region"),
    ];
    for (from, to, key) in cases {
        let c = Config::parse(&minimal().replace(from, to)).unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with(key), "{to}: {e}");
    }
    let text = minimal().replace("[intake]", "") + "[intake]\nchunk_timeout = \"soon\"\n";
    let e = Config::parse(&text).unwrap_err().to_string();
    assert!(e.contains("chunk_timeout"), "{e}");
}

fn with_setup(setup: &str) -> Config {
    let text = minimal()
        + "[a2i.setup]\n"
        + "workteam_arn = \"arn:aws:sagemaker:us-east-1:000000000000:workteam/private-crowd/t\"\n"
        + "role_arn = \"arn:aws:iam::000000000000:role/a2i\"\n"
        + setup;
    Config::parse(&text).unwrap()
}

#[test]
fn the_default_configs_setup_table_is_complete() {
    let c = Config::parse(DEFAULT_CONFIG).unwrap();
    c.validate_for(Purpose::Setup).unwrap();
    let s = c.a2i.setup.as_ref().unwrap();
    assert_eq!(s.flow_definition_name(&c), "edge-a2i-dogs");
    assert_eq!(s.task_ui_name(&c), "edge-a2i-dogs");
    assert_eq!(s.output_path(&c), "s3://edge-a2i-frames/a2i-output");
    assert_eq!(s.task_time_limit, Duration::from_secs(3600));
}

#[test]
fn setup_may_run_before_the_flow_definition_arn_exists_but_run_may_not() {
    let mut c = with_setup("flow_definition_name = \"dogs-v2\"\n");
    c.a2i.flow_definition_arn.clear();
    c.validate_for(Purpose::Setup).unwrap();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.starts_with("a2i.flow_definition_arn: is missing"), "{e}");
    // Without a name or an ARN, setup does not know what to create.
    let mut c = with_setup("");
    c.a2i.flow_definition_arn.clear();
    let e = c.validate_for(Purpose::Setup).unwrap_err().to_string();
    assert!(e.starts_with("a2i.setup.flow_definition_name"), "{e}");
    // And without [a2i.setup] at all, it says which table is missing.
    let c = Config::parse(&minimal()).unwrap();
    let e = c.validate_for(Purpose::Setup).unwrap_err().to_string();
    assert!(e.starts_with("a2i.setup: is missing"), "{e}");
}

#[test]
fn setup_values_are_checked_and_name_their_key() {
    let cases = [
        ("task_count = 4\n", "a2i.setup.task_count"),
        ("task_ui_name = \"Dogs UI\"\n", "a2i.setup.task_ui_name"),
        ("output_path = \"frames/a2i\"\n", "a2i.setup.output_path"),
        ("task_time_limit = \"10s\"\n", "a2i.setup.task_time_limit"),
        (
            "task_availability = \"11days\"\n",
            "a2i.setup.task_availability",
        ),
        ("task_title = \" \"\n", "a2i.setup.task_title"),
    ];
    for (line, key) in cases {
        let e = with_setup(line).validate().unwrap_err().to_string();
        assert!(e.starts_with(key), "{line}: {e}");
    }
    let mut c = with_setup("");
    c.a2i.setup.as_mut().unwrap().workteam_arn = "arn:aws:iam::000000000000:role/x".into();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.starts_with("a2i.setup.workteam_arn"), "{e}");
    let mut c = with_setup("");
    c.a2i.setup.as_mut().unwrap().role_arn = "role/a2i".into();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.starts_with("a2i.setup.role_arn"), "{e}");
}
