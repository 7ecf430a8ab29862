//! Specification of chunk reassembly: order independence, idempotent duplicates,
//! rejection of inconsistent or forged chunks, bounded memory and timeouts.

use super::*;
use crate::envelope::{decode, encode_event, Limits};
use crate::event::tests::meta_for;
use crate::event::EventId;

fn image(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

/// The chunks of a `len`-byte image with its own event id, 2000-byte messages.
fn chunks_of(img: &[u8], id_seed: u8) -> Vec<Chunk> {
    let mut meta = meta_for(img);
    meta.event_id = EventId::from_unix_ms(1_795_597_200_000, [id_seed; 10]);
    let limits = Limits {
        max_message_bytes: 2000,
        ..Limits::default()
    };
    encode_event(&meta, img, 30, &limits)
        .unwrap()
        .iter()
        .map(|m| match decode(m).unwrap() {
            Message::Chunk(c) => c,
            Message::Event(_) => panic!("expected chunks"),
        })
        .collect()
}

fn assembler(max_pending_bytes: u64, max_pending_sets: usize) -> ChunkAssembler {
    ChunkAssembler::new(AssemblerLimits {
        max_pending_bytes,
        max_pending_sets,
        timeout_ms: 1000,
    })
}

#[test]
fn reassembles_chunks_arriving_in_any_order() {
    let img = image(10_000, 1);
    let mut chunks = chunks_of(&img, 1);
    assert!(chunks.len() >= 6);
    chunks.reverse();
    chunks.swap(1, 3);
    let mut a = ChunkAssembler::default();
    let last = chunks.pop().unwrap();
    for c in chunks {
        assert_eq!(a.offer(c, 0).unwrap(), None);
    }
    assert!(a.pending_bytes() > 0);
    let done = a
        .offer(last, 0)
        .unwrap()
        .expect("complete after the last chunk");
    assert_eq!(done.image, img);
    assert_eq!(done.meta, meta_for(&img).with_id(done.meta.event_id));
    assert_eq!(
        (a.pending_sets(), a.pending_bytes()),
        (0, 0),
        "nothing held after completion"
    );
    assert_eq!(a.counters().completed, 1);
}

impl EventMeta {
    fn with_id(mut self, id: EventId) -> Self {
        self.event_id = id;
        self
    }
}

#[test]
fn duplicate_chunks_are_ignored_and_counted() {
    let img = image(5000, 2);
    let chunks = chunks_of(&img, 2);
    let mut a = ChunkAssembler::default();
    a.offer(chunks[0].clone(), 0).unwrap();
    let held = a.pending_bytes();
    assert_eq!(a.offer(chunks[0].clone(), 1).unwrap(), None);
    assert_eq!(a.pending_bytes(), held);
    assert_eq!(a.counters().duplicates, 1);
    for c in &chunks[1..] {
        a.offer(c.clone(), 2).unwrap();
    }
    assert_eq!(a.counters().completed, 1);
}

#[test]
fn a_repeated_index_with_different_bytes_is_rejected() {
    let chunks = chunks_of(&image(5000, 3), 3);
    let mut a = ChunkAssembler::default();
    a.offer(chunks[1].clone(), 0).unwrap();
    let mut forged = chunks[1].clone();
    forged.body[0] ^= 0xff;
    let err = a.offer(forged, 0).unwrap_err();
    assert!(
        matches!(err, AssemblyError::ConflictingDuplicate { index: 1, .. }),
        "{err}"
    );
    assert_eq!(a.counters().rejected.conflicting_duplicate, 1);
}

#[test]
fn chunks_that_contradict_their_set_are_rejected_naming_the_field() {
    let img = image(5000, 4);
    let chunks = chunks_of(&img, 4);
    let id = chunks[0].header.event_id;
    let mut a = ChunkAssembler::default();
    a.offer(chunks[0].clone(), 0).unwrap();
    let field = |a: &mut ChunkAssembler, c: Chunk| match a.offer(c, 0).unwrap_err() {
        AssemblyError::Inconsistent { field, .. } => field,
        other => panic!("{other}"),
    };
    // The same id but a different layout (say, re-encoded with another limit).
    let mut c = chunks[1].clone();
    c.header.count += 1;
    assert_eq!(field(&mut a, c), "count");
    // Another image under the same id: different total size and digest.
    let mut bigger = chunks_of(&image(5001, 4), 4).remove(1);
    bigger.header.count = chunks[0].header.count;
    assert_eq!(field(&mut a, bigger), "total_size");
    let other_bytes = chunks_of(&image(5000, 5), 4).remove(1);
    assert_eq!(other_bytes.header.event_id, id);
    assert_eq!(field(&mut a, other_bytes), "image_sha256");
    let mut c = chunks[1].clone();
    c.header.meta.captured_at = "2026-11-25T10:00:00.000Z".into();
    assert_eq!(field(&mut a, c), "meta");
    assert_eq!(a.counters().rejected.inconsistent, 4);
    assert!(
        a.offer(chunks[1].clone(), 0).is_ok(),
        "the set itself is unharmed"
    );
}

#[test]
fn chunks_whose_offsets_do_not_tile_the_image_are_rejected() {
    let img = image(5000, 6);
    let chunks = chunks_of(&img, 6);
    let mut a = ChunkAssembler::default();
    a.offer(chunks[1].clone(), 0).unwrap();
    let start = chunks[2].header.offset;
    let mut shifted = chunks[2].clone();
    shifted.header.offset = start - 1; // overlaps chunk 1
    shifted.body = img[(start - 1) as usize..(start - 1 + shifted.header.size) as usize].to_vec();
    let err = a.offer(shifted, 0).unwrap_err();
    assert!(
        matches!(
            err,
            AssemblyError::Overlap {
                index: 2,
                neighbour: 1,
                ..
            }
        ),
        "{err}"
    );
    let mut gap = chunks[2].clone();
    gap.header.offset = start + 1;
    gap.body.pop();
    gap.header.size -= 1;
    let err = a.offer(gap, 0).unwrap_err();
    assert!(
        err.to_string().contains("does not line up with chunk 1"),
        "{err}"
    );
    assert_eq!(a.counters().rejected.overlap, 2);
}

#[test]
fn a_forged_checksum_returns_nothing_and_drops_the_set() {
    let img = image(5000, 7);
    let mut chunks = chunks_of(&img, 7);
    let last = chunks.len() - 1;
    chunks[last].body[0] ^= 1; // consistent headers, wrong bytes
    let mut a = ChunkAssembler::default();
    let mut results: Vec<_> = chunks.into_iter().map(|c| a.offer(c, 0)).collect();
    let err = results.pop().unwrap().unwrap_err();
    assert!(
        matches!(err, AssemblyError::ChecksumMismatch { .. }),
        "{err}"
    );
    assert!(results.iter().all(|r| matches!(r, Ok(None))));
    assert_eq!(a.pending_sets(), 0);
    assert_eq!(a.counters().rejected.checksum_mismatch, 1);
    assert_eq!(a.counters().completed, 0);
}

#[test]
fn whole_events_are_verified_like_reassembled_ones() {
    let img = image(100, 8);
    let meta = meta_for(&img);
    assert!(verify_whole(&meta, &img).is_ok());
    let mut a = ChunkAssembler::default();
    let done = a.offer_message(
        Message::Event(WholeEvent {
            meta: meta.clone(),
            image: img.clone(),
        }),
        0,
    );
    assert_eq!(done.unwrap().unwrap().image, img);
    let mut tampered = img.clone();
    tampered[5] ^= 1;
    let err = a
        .accept_whole(WholeEvent {
            meta: meta.clone(),
            image: tampered,
        })
        .unwrap_err();
    assert!(err.to_string().contains("image sha256 is"), "{err}");
    let err = verify_whole(&meta, &img[..99]).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("meta says the image has 100 bytes but 99 arrived"),
        "{err}"
    );
    assert_eq!(a.counters().completed, 1);
    assert_eq!(a.counters().rejected.checksum_mismatch, 1);
}

#[test]
fn a_chunk_that_contradicts_itself_is_rejected_even_when_built_by_hand() {
    let mut c = chunks_of(&image(5000, 9), 9).remove(0);
    c.header.index = c.header.count;
    let mut a = ChunkAssembler::default();
    let err = a.offer(c, 0).unwrap_err();
    assert!(matches!(
        err,
        AssemblyError::InvalidChunk {
            source: ChunkError::IndexOutOfRange { .. },
            ..
        }
    ));
    assert_eq!(a.counters().rejected.invalid_chunk, 1);
}

#[test]
fn a_set_that_could_never_fit_in_memory_is_refused_at_its_first_chunk() {
    let chunks = chunks_of(&image(5000, 10), 10);
    let mut a = assembler(5000, 4);
    let err = a.offer(chunks[0].clone(), 0).unwrap_err();
    assert!(
        matches!(
            err,
            AssemblyError::TooLarge {
                total_size: 5000,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(a.pending_sets(), 0);
}

#[test]
fn when_too_many_sets_are_pending_the_stalest_is_evicted() {
    let sets: Vec<_> = (0..3).map(|s| chunks_of(&image(5000, s), s)).collect();
    let mut a = assembler(1 << 20, 2);
    a.offer(sets[0][0].clone(), 0).unwrap();
    a.offer(sets[1][0].clone(), 1).unwrap();
    a.offer(sets[0][1].clone(), 2).unwrap(); // set 0 is active again; set 1 is stalest
    a.offer(sets[2][0].clone(), 3).unwrap();
    let ids: Vec<_> = sets.iter().map(|s| s[0].header.event_id).collect();
    assert!(a.is_pending(&ids[0]) && !a.is_pending(&ids[1]) && a.is_pending(&ids[2]));
    assert_eq!(a.counters().evicted, 1);
    assert_eq!(a.take_evicted(), vec![ids[1]]);
    assert!(a.take_evicted().is_empty());
}

#[test]
fn when_pending_bytes_would_exceed_the_limit_stalest_sets_make_room() {
    let sets: Vec<_> = (0..3).map(|s| chunks_of(&image(5000, s), s)).collect();
    let limit = 5000 + 64 * sets[0].len() as u64; // exactly one whole set
    let mut a = assembler(limit, 10);
    a.offer(sets[0][0].clone(), 0).unwrap();
    a.offer(sets[1][0].clone(), 1).unwrap();
    for c in &sets[2][..sets[2].len() - 1] {
        a.offer(c.clone(), 2).unwrap();
        assert!(a.pending_bytes() <= limit);
    }
    assert_eq!(a.counters().evicted, 2);
    assert_eq!(a.pending_sets(), 1);
    let done = a.offer(sets[2].last().unwrap().clone(), 3).unwrap();
    assert_eq!(done.unwrap().image, image(5000, 2));
}

#[test]
fn incomplete_sets_expire_after_the_timeout_since_their_last_chunk() {
    let a_chunks = chunks_of(&image(5000, 11), 11);
    let b_chunks = chunks_of(&image(5000, 12), 12);
    let mut a = assembler(1 << 20, 10); // timeout 1000 ms
    a.offer(a_chunks[0].clone(), 0).unwrap();
    a.offer(b_chunks[0].clone(), 0).unwrap();
    a.offer(b_chunks[1].clone(), 600).unwrap();
    assert!(a.expire(999).is_empty());
    assert_eq!(a.expire(1000), vec![a_chunks[0].header.event_id]);
    assert_eq!(a.expire(1599), vec![]);
    assert_eq!(a.expire(1600), vec![b_chunks[0].header.event_id]);
    assert_eq!(
        (a.pending_sets(), a.pending_bytes(), a.counters().expired),
        (0, 0, 2)
    );
}

#[test]
fn a_late_duplicate_after_completion_starts_a_new_set_that_can_complete_again() {
    // The relay acks only after storing; if storing failed, the whole set comes again
    // and must complete again (consumers are idempotent on the event id).
    let img = image(5000, 13);
    let chunks = chunks_of(&img, 13);
    let mut a = ChunkAssembler::default();
    for round in 0..2 {
        let results: Vec<_> = chunks
            .iter()
            .map(|c| a.offer(c.clone(), round).unwrap())
            .collect();
        assert!(results.last().unwrap().is_some());
    }
    assert_eq!(a.counters().completed, 2);
}

#[test]
fn a_single_chunk_set_completes_at_once_without_being_held() {
    let img = image(5000, 14);
    let mut c = chunks_of(&img, 14).remove(0);
    c.header.count = 1;
    c.header.size = img.len() as u64;
    c.body = img.clone();
    let mut a = assembler(100, 1);
    assert_eq!(a.offer(c, 0).unwrap().unwrap().image, img);
}
