use super::*;
use serde_json::json;
use time::macros::datetime;
use time::Duration;

const T0: OffsetDateTime = datetime!(2024-05-01 12:00:00 UTC);

fn flow(name: &str) -> FlowTarget {
    FlowTarget {
        arn: format!("arn:aws:sagemaker:us-east-1:000000000000:flow-definition/{name}"),
        name: name.into(),
        output_path: "s3://bucket/a2i/".into(),
    }
}

fn req(name: &str) -> StartRequest {
    StartRequest {
        name: name.into(),
        input_content: json!({"taskObject": "s3://bucket/img.jpg", "initialValue": "beagle"})
            .to_string(),
        content_classifiers: vec![],
    }
}

fn answer() -> HumanAnswer {
    let ms = |t: OffsetDateTime| (t.unix_timestamp_nanos() / 1_000_000) as i64;
    HumanAnswer::classification(
        "annotatedResult",
        "beagle",
        "w1",
        ms(T0),
        ms(T0 + Duration::seconds(5)),
        None,
    )
}

fn store_with(loops: &[(&str, &str, OffsetDateTime)]) -> HumanLoopStore {
    let mut s = HumanLoopStore::default();
    for (name, flow_name, at) in loops {
        s.start(&req(name), &flow(flow_name), format!("arn:{name}"), *at)
            .unwrap();
    }
    s
}

fn names(page: &ListPage) -> Vec<String> {
    page.loops.iter().map(|l| l.name.clone()).collect()
}

fn query(flow_name: &str) -> ListQuery {
    ListQuery {
        flow_definition_name: flow_name.into(),
        ..ListQuery::default()
    }
}

#[test]
fn a_started_loop_is_in_progress_with_its_output_location_fixed() {
    let mut s = HumanLoopStore::default();
    let at = datetime!(2024-05-01 12:03:04.567891 UTC);
    let l = s
        .start(&req("loop-1"), &flow("flow"), "arn:l".into(), at)
        .unwrap();
    assert_eq!(l.status, HumanLoopStatus::InProgress);
    assert_eq!(
        l.creation_time,
        datetime!(2024-05-01 12:03:04.567 UTC),
        "kept to the millisecond"
    );
    assert_eq!(
        l.output_s3_uri,
        "s3://bucket/a2i/flow/2024/05/01/12/03/04/loop-1/output.json"
    );
    assert_eq!(l.flow_definition_name, "flow");
    assert!(l.legacy_input.is_none());
}

#[test]
fn starting_an_existing_name_is_a_conflict_and_changes_nothing() {
    let mut s = store_with(&[("a", "flow", T0)]);
    let before = s.clone();
    let mut again = req("a");
    again.input_content = "{}".into();
    assert_eq!(
        s.start(
            &again,
            &flow("other"),
            "arn:x".into(),
            T0 + Duration::hours(1)
        )
        .unwrap_err(),
        LoopError::AlreadyExists("a".into())
    );
    assert_eq!(s, before);
}

#[test]
fn names_follow_the_a2i_pattern() {
    for ok in ["a", "0", "a-b", "a--b", "abc123", &"x".repeat(63)] {
        assert_eq!(validate_loop_name(ok), Ok(()), "{ok}");
    }
    for bad in [
        "",
        "-a",
        "a-",
        "A",
        "a_b",
        "a.b",
        "a b",
        "é",
        &"x".repeat(64),
    ] {
        assert!(
            matches!(validate_loop_name(bad), Err(LoopError::InvalidName { .. })),
            "{bad}"
        );
    }
    let mut s = HumanLoopStore::default();
    assert!(matches!(
        s.start(&req("Bad_Name"), &flow("f"), "arn".into(), T0),
        Err(LoopError::InvalidName { .. })
    ));
    assert!(matches!(
        s.describe("Bad"),
        Err(LoopError::InvalidName { .. })
    ));
    assert!(s.is_empty());
}

#[test]
fn input_content_must_be_json() {
    let mut s = HumanLoopStore::default();
    let mut r = req("a");
    r.input_content = "not json".into();
    assert!(matches!(
        s.start(&r, &flow("f"), "arn".into(), T0),
        Err(LoopError::Invalid(_))
    ));
    assert!(s.is_empty());
}

#[test]
fn the_in_progress_quota_counts_only_loops_in_progress() {
    let mut s = HumanLoopStore::new(2);
    s.start(&req("a"), &flow("f"), "arn".into(), T0).unwrap();
    s.start(&req("b"), &flow("f"), "arn".into(), T0).unwrap();
    assert_eq!(
        s.start(&req("c"), &flow("f"), "arn".into(), T0)
            .unwrap_err(),
        LoopError::QuotaExceeded { limit: 2 }
    );
    s.stop("a").unwrap();
    s.start(&req("c"), &flow("f"), "arn".into(), T0).unwrap();
}

#[test]
fn describing_an_unknown_loop_is_not_found() {
    let s = HumanLoopStore::default();
    assert_eq!(
        s.describe("nope").unwrap_err(),
        LoopError::NotFound("nope".into())
    );
}

#[test]
fn stop_moves_an_in_progress_loop_to_stopped_and_repeats_harmlessly() {
    let mut s = store_with(&[("a", "f", T0)]);
    s.stop("a").unwrap();
    assert_eq!(s.describe("a").unwrap().status, HumanLoopStatus::Stopped);
    assert_eq!(s.check_stop("a"), Ok(None), "second stop changes nothing");
    s.stop("a").unwrap();
    assert_eq!(
        s.stop("nope").unwrap_err(),
        LoopError::NotFound("nope".into())
    );
}

#[test]
fn a_completed_loop_cannot_be_stopped() {
    let mut s = store_with(&[("a", "f", T0)]);
    s.complete("a", vec![answer()]).unwrap();
    assert!(matches!(
        s.stop("a"),
        Err(LoopError::WrongState {
            status: HumanLoopStatus::Completed,
            ..
        })
    ));
}

#[test]
fn a_loop_in_progress_must_be_stopped_before_it_is_deleted() {
    let mut s = store_with(&[("a", "f", T0)]);
    assert!(matches!(
        s.delete("a"),
        Err(LoopError::WrongState {
            status: HumanLoopStatus::InProgress,
            ..
        })
    ));
    s.stop("a").unwrap();
    s.delete("a").unwrap();
    assert_eq!(
        s.describe("a").unwrap_err(),
        LoopError::NotFound("a".into())
    );
    assert_eq!(s.delete("a").unwrap_err(), LoopError::NotFound("a".into()));
}

#[test]
fn a_deleted_name_can_be_started_again() {
    let mut s = store_with(&[("a", "f", T0)]);
    s.stop("a").unwrap();
    s.delete("a").unwrap();
    s.start(
        &req("a"),
        &flow("f"),
        "arn".into(),
        T0 + Duration::minutes(1),
    )
    .unwrap();
    assert_eq!(s.describe("a").unwrap().status, HumanLoopStatus::InProgress);
}

#[test]
fn complete_marks_the_loop_completed_and_returns_the_output_location() {
    let mut s = store_with(&[("a", "f", T0)]);
    let uri = s.complete("a", vec![answer()]).unwrap();
    assert_eq!(uri, "s3://bucket/a2i/f/2024/05/01/12/00/00/a/output.json");
    let l = s.describe("a").unwrap();
    assert_eq!(l.status, HumanLoopStatus::Completed);
    // Completed loops can be deleted, but not completed twice.
    assert!(matches!(
        s.complete("a", vec![answer()]),
        Err(LoopError::WrongState { .. })
    ));
    s.delete("a").unwrap();
}

#[test]
fn completing_needs_an_answer_and_a_loop_in_progress() {
    let mut s = store_with(&[("a", "f", T0), ("b", "f", T0)]);
    assert!(matches!(
        s.complete("a", vec![]),
        Err(LoopError::Invalid(_))
    ));
    s.stop("b").unwrap();
    assert!(matches!(
        s.complete("b", vec![answer()]),
        Err(LoopError::WrongState {
            status: HumanLoopStatus::Stopped,
            ..
        })
    ));
    assert_eq!(
        s.complete("zz", vec![answer()]).unwrap_err(),
        LoopError::NotFound("zz".into())
    );
}

#[test]
fn check_does_not_change_the_store_until_the_event_is_applied() {
    let s = store_with(&[("a", "f", T0)]);
    let before = s.clone();
    let _ = s
        .check_start(&req("b"), &flow("f"), "arn".into(), T0)
        .unwrap();
    let _ = s.check_stop("a").unwrap();
    let _ = s.check_complete("a", vec![answer()]).unwrap();
    assert_eq!(s, before);
}

#[test]
fn applying_an_event_twice_is_the_same_as_once() {
    let mut s = HumanLoopStore::default();
    let started = s
        .check_start(&req("a"), &flow("f"), "arn".into(), T0)
        .unwrap();
    s.apply(&started);
    let stopped = s.check_stop("a").unwrap().unwrap();
    s.apply(&stopped);
    let once = s.clone();
    s.apply(&started);
    s.apply(&stopped);
    assert_eq!(s, once);
    let deleted = s.check_delete("a").unwrap();
    s.apply(&deleted);
    s.apply(&deleted);
    s.apply(&stopped); // on a loop that is gone: ignored
    assert!(s.is_empty());
}

#[test]
fn has_active_loops_sees_only_loops_waiting_for_reviewers() {
    let mut s = store_with(&[("a", "f", T0), ("b", "g", T0)]);
    assert!(s.has_active_loops("f"));
    s.stop("a").unwrap();
    assert!(!s.has_active_loops("f"));
    assert!(s.has_active_loops("g"));
    assert!(!s.has_active_loops("h"));
}

#[test]
fn list_returns_only_the_loops_of_the_flow_newest_first_by_default() {
    let s = store_with(&[
        ("a", "f", T0),
        ("b", "g", T0 + Duration::seconds(1)),
        ("c", "f", T0 + Duration::seconds(2)),
    ]);
    let page = s.list(&query("f")).unwrap();
    assert_eq!(names(&page), ["c", "a"]);
    assert_eq!(page.next_token, None);
    let asc = s
        .list(&ListQuery {
            sort_order: SortOrder::Ascending,
            ..query("f")
        })
        .unwrap();
    assert_eq!(names(&asc), ["a", "c"]);
    assert!(s.list(&query("nobody")).unwrap().loops.is_empty());
}

#[test]
fn list_filters_strictly_after_and_before_the_given_times() {
    let s = store_with(&[
        ("a", "f", T0),
        ("b", "f", T0 + Duration::seconds(1)),
        ("c", "f", T0 + Duration::seconds(2)),
        ("d", "f", T0 + Duration::seconds(3)),
    ]);
    let q = ListQuery {
        created_after: Some(T0),
        created_before: Some(T0 + Duration::seconds(3)),
        sort_order: SortOrder::Ascending,
        ..query("f")
    };
    assert_eq!(names(&s.list(&q).unwrap()), ["b", "c"]);
    let q = ListQuery {
        created_after: Some(T0 + Duration::milliseconds(2500)),
        ..query("f")
    };
    assert_eq!(names(&s.list(&q).unwrap()), ["d"]);
}

#[test]
fn pages_cover_every_loop_exactly_once_in_both_orders() {
    // Equal creation times too: ties are broken by name.
    let loops: Vec<(String, OffsetDateTime)> = (0..11)
        .map(|i| (format!("loop-{i:02}"), T0 + Duration::seconds(i / 2)))
        .collect();
    let refs: Vec<(&str, &str, OffsetDateTime)> =
        loops.iter().map(|(n, t)| (n.as_str(), "f", *t)).collect();
    let s = store_with(&refs);
    for order in [SortOrder::Ascending, SortOrder::Descending] {
        for size in 1..=12 {
            let mut seen = Vec::new();
            let mut token = None;
            let mut pages = 0;
            loop {
                let page = s
                    .list(&ListQuery {
                        sort_order: order,
                        max_results: Some(size),
                        next_token: token.take(),
                        ..query("f")
                    })
                    .unwrap();
                assert!(page.loops.len() <= size as usize);
                seen.extend(names(&page));
                pages += 1;
                match page.next_token {
                    Some(t) => token = Some(t),
                    None => break,
                }
            }
            let mut expected: Vec<String> = loops.iter().map(|(n, _)| n.clone()).collect();
            if order == SortOrder::Descending {
                expected.reverse();
            }
            assert_eq!(seen, expected, "order {order:?} size {size}");
            assert_eq!(pages, 11usize.div_ceil(size as usize), "no empty last page");
        }
    }
}

#[test]
fn a_page_cursor_survives_loops_deleted_meanwhile() {
    let mut s = store_with(&[
        ("a", "f", T0),
        ("b", "f", T0 + Duration::seconds(1)),
        ("c", "f", T0 + Duration::seconds(2)),
        ("d", "f", T0 + Duration::seconds(3)),
    ]);
    let q = ListQuery {
        sort_order: SortOrder::Ascending,
        max_results: Some(2),
        ..query("f")
    };
    let first = s.list(&q).unwrap();
    assert_eq!(names(&first), ["a", "b"]);
    let token = first.next_token.clone().unwrap();
    s.stop("b").unwrap();
    s.delete("b").unwrap();
    s.stop("c").unwrap();
    s.delete("c").unwrap();
    let second = s
        .list(&ListQuery {
            next_token: Some(token),
            ..q
        })
        .unwrap();
    assert_eq!(names(&second), ["d"]);
    assert_eq!(second.next_token, None);
}

#[test]
fn max_results_must_be_between_1_and_100() {
    let s = store_with(&[("a", "f", T0)]);
    for bad in [0, -1, 101] {
        let q = ListQuery {
            max_results: Some(bad),
            ..query("f")
        };
        assert!(matches!(s.list(&q), Err(LoopError::Invalid(_))), "{bad}");
    }
    for ok in [1, 100] {
        let q = ListQuery {
            max_results: Some(ok),
            ..query("f")
        };
        assert!(s.list(&q).is_ok());
    }
}

#[test]
fn a_foreign_or_mismatched_next_token_is_a_validation_error() {
    let s = store_with(&[("a", "f", T0), ("b", "f", T0 + Duration::seconds(1))]);
    let page = s
        .list(&ListQuery {
            max_results: Some(1),
            ..query("f")
        })
        .unwrap();
    let token = page.next_token.unwrap();
    let other_order = ListQuery {
        sort_order: SortOrder::Ascending,
        next_token: Some(token),
        ..query("f")
    };
    assert!(matches!(s.list(&other_order), Err(LoopError::Invalid(_))));
    for bad in ["zz", "abc", "00", "763a", &"41".repeat(5000)] {
        let q = ListQuery {
            next_token: Some(bad.into()),
            ..query("f")
        };
        assert!(matches!(s.list(&q), Err(LoopError::Invalid(_))), "{bad}");
    }
}

#[test]
fn the_store_round_trips_through_json() {
    let mut s = store_with(&[("a", "f", T0), ("b", "f", T0)]);
    s.complete("a", vec![answer()]).unwrap();
    let text = serde_json::to_string(&s).unwrap();
    let back: HumanLoopStore = serde_json::from_str(&text).unwrap();
    assert_eq!(back, s);
}
