//! MJPEG camera frames made into standalone JPEG files.
//!
//! USB (UVC) webcams send MJPEG frames that usually omit the Huffman tables (no DHT
//! segment): the MJPEG format says decoders must then use the "typical" tables of
//! ITU-T T.81 Annex K.3. libjpeg-turbo fills them in silently, but other decoders
//! reject such a frame, among them the `image` crate this agent decodes with ("No DC
//! table for component Y"), and a frame stored for review should be a valid JPEG for
//! any viewer. So [`normalize_frame`] inserts those tables before the first scan. It also
//! refuses empty and truncated frames (no EOI: a USB transfer cut short) and trims the
//! padding some drivers leave after EOI. It is a pure function over bytes, tested with
//! recorded frames; the capture code in `camera.rs` only hands it buffers. Files get
//! the same repair through [`repair`] when they are decoded (`preprocess::decode`): a
//! frame saved from a webcam's stream is the same table-less JPEG, and data after EOI
//! (phones' motion photos, vendor trailers) is not part of the image.

/// Why a captured frame is not a usable JPEG.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MjpegError {
    #[error("empty frame (0 bytes)")]
    Empty,
    #[error("not a JPEG frame: no SOI marker (starts with {0})")]
    NotJpeg(String),
    #[error("truncated frame: the data ends at byte {0} before the EOI marker")]
    Truncated(usize),
    #[error("corrupt frame: {0}")]
    Corrupt(String),
}

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;
const DHT: u8 = 0xC4;

/// ITU-T T.81 Annex K.3 tables as one DHT segment body, in the order class/id,
/// 16 code-length counts, values: DC luminance (K.3), DC chrominance (K.4),
/// AC luminance (K.5), AC chrominance (K.6).
const DC_LUMA_COUNTS: [u8; 16] = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
const DC_CHROMA_COUNTS: [u8; 16] = [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0];
const DC_VALUES: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
const AC_LUMA_COUNTS: [u8; 16] = [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D];
#[rustfmt::skip]
const AC_LUMA_VALUES: [u8; 162] = [
    0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07,
    0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xA1, 0x08, 0x23, 0x42, 0xB1, 0xC1, 0x15, 0x52, 0xD1, 0xF0,
    0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0A, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x25, 0x26, 0x27, 0x28,
    0x29, 0x2A, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49,
    0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69,
    0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
    0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7,
    0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5,
    0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE1, 0xE2,
    0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8,
    0xF9, 0xFA,
];
const AC_CHROMA_COUNTS: [u8; 16] = [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77];
#[rustfmt::skip]
const AC_CHROMA_VALUES: [u8; 162] = [
    0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71,
    0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xA1, 0xB1, 0xC1, 0x09, 0x23, 0x33, 0x52, 0xF0,
    0x15, 0x62, 0x72, 0xD1, 0x0A, 0x16, 0x24, 0x34, 0xE1, 0x25, 0xF1, 0x17, 0x18, 0x19, 0x1A, 0x26,
    0x27, 0x28, 0x29, 0x2A, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48,
    0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
    0x69, 0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87,
    0x88, 0x89, 0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5,
    0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3,
    0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA,
    0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8,
    0xF9, 0xFA,
];

/// The standard tables as a complete DHT segment (marker, length, four tables).
pub fn standard_dht_segment() -> Vec<u8> {
    let tables: [(u8, &[u8; 16], &[u8]); 4] = [
        (0x00, &DC_LUMA_COUNTS, &DC_VALUES),
        (0x01, &DC_CHROMA_COUNTS, &DC_VALUES),
        (0x10, &AC_LUMA_COUNTS, &AC_LUMA_VALUES),
        (0x11, &AC_CHROMA_COUNTS, &AC_CHROMA_VALUES),
    ];
    let body: Vec<u8> = tables
        .iter()
        .flat_map(|(class_id, counts, values)| {
            std::iter::once(*class_id)
                .chain(counts.iter().copied())
                .chain(values.iter().copied())
        })
        .collect();
    let len = (body.len() + 2) as u16;
    let mut segment = vec![0xFF, DHT];
    segment.extend_from_slice(&len.to_be_bytes());
    segment.extend_from_slice(&body);
    segment
}

/// One marker segment found by [`scan_segments`]: `start` is the index of its 0xFF.
#[derive(Debug, Clone, Copy)]
struct Segment {
    marker: u8,
    start: usize,
    /// One past the last byte of the segment (for SOS: of its entropy-coded data).
    end: usize,
}

/// Walks the marker structure from SOI to EOI. Returns the segments between them
/// and the index one past EOI.
fn scan_segments(bytes: &[u8]) -> Result<(Vec<Segment>, usize), MjpegError> {
    if bytes.is_empty() {
        return Err(MjpegError::Empty);
    }
    if !bytes.starts_with(&[0xFF, SOI]) {
        let head: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
        return Err(MjpegError::NotJpeg(head.join(" ")));
    }
    let mut segments = Vec::new();
    let mut i = 2;
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes (T.81 B.1.1.2).
        if i >= bytes.len() {
            return Err(MjpegError::Truncated(bytes.len()));
        }
        if bytes[i] != 0xFF {
            return Err(MjpegError::Corrupt(format!(
                "expected a marker at byte {i}, found {:02x}",
                bytes[i]
            )));
        }
        let start = i;
        while i < bytes.len() && bytes[i] == 0xFF {
            i += 1;
        }
        let Some(&marker) = bytes.get(i) else {
            return Err(MjpegError::Truncated(bytes.len()));
        };
        i += 1;
        match marker {
            EOI => return Ok((segments, i)),
            SOI | 0x01 | 0xD0..=0xD7 => {
                return Err(MjpegError::Corrupt(format!(
                    "unexpected marker {marker:02x} at byte {start}"
                )))
            }
            _ => {}
        }
        let Some(len) = bytes.get(i..i + 2) else {
            return Err(MjpegError::Truncated(bytes.len()));
        };
        let len = u16::from_be_bytes([len[0], len[1]]) as usize;
        if len < 2 {
            return Err(MjpegError::Corrupt(format!(
                "segment {marker:02x} at byte {start} has length {len}"
            )));
        }
        i += len;
        if i > bytes.len() {
            return Err(MjpegError::Truncated(bytes.len()));
        }
        if marker == SOS {
            // Entropy-coded data runs to the next marker that is neither a stuffed
            // zero (FF 00), a restart marker (FF D0..D7) nor fill (FF FF).
            // (Jumping from 0xFF to 0xFF: a phone photo's scan is megabytes long.)
            loop {
                let Some(off) = bytes[i..].iter().position(|&b| b == 0xFF) else {
                    return Err(MjpegError::Truncated(bytes.len()));
                };
                i += off;
                match bytes.get(i + 1) {
                    None => return Err(MjpegError::Truncated(bytes.len())),
                    Some(0x00) | Some(0xD0..=0xD7) => i += 2,
                    Some(0xFF) => i += 1,
                    Some(_) => break,
                }
            }
        }
        segments.push(Segment {
            marker,
            start,
            end: i,
        });
    }
}

/// True if the frame is Huffman-coded (SOF0-3, 5-7) and carries no DHT segment before
/// its first scan, i.e. it relies on the standard tables.
fn needs_standard_tables(segments: &[Segment]) -> bool {
    let mut huffman = false;
    for s in segments {
        match s.marker {
            DHT => return false,
            0xC0..=0xC3 | 0xC5..=0xC7 => huffman = true,
            SOS => return huffman,
            _ => {}
        }
    }
    false
}

/// Makes a captured MJPEG frame a standalone JPEG: inserts the standard Huffman tables
/// if the frame has none, drops anything after EOI, and rejects empty, non-JPEG and
/// truncated frames. A frame that needs nothing comes back unchanged.
pub fn normalize_frame(bytes: &[u8]) -> Result<Vec<u8>, MjpegError> {
    Ok(repair(bytes)?.unwrap_or_else(|| bytes.to_vec()))
}

/// As [`normalize_frame`], without copying a JPEG that needs nothing: `None` when
/// `bytes` is already a standalone JPEG ending at its EOI. Decoding a file uses this
/// (`preprocess::decode`): a JPEG saved from a webcam's stream lacks the tables as the
/// frame did, and phones and cameras append data after EOI (a motion photo's video,
/// vendor trailers, padding) that is not part of the image.
pub fn repair(bytes: &[u8]) -> Result<Option<Vec<u8>>, MjpegError> {
    let (segments, end) = scan_segments(bytes)?;
    let Some(first_sos) = segments.iter().find(|s| s.marker == SOS) else {
        return Err(MjpegError::Corrupt("no SOS (start of scan) marker".into()));
    };
    if !needs_standard_tables(&segments) {
        return Ok((end < bytes.len()).then(|| bytes[..end].to_vec()));
    }
    let dht = standard_dht_segment();
    let mut out = Vec::with_capacity(end + dht.len());
    out.extend_from_slice(&bytes[..first_sos.start]);
    out.extend_from_slice(&dht);
    out.extend_from_slice(&bytes[first_sos.start..end]);
    Ok(Some(out))
}

/// Where the JPEG at the start of `bytes` ends: one past its EOI marker, found by
/// walking its marker structure (so an EOI inside a segment or a thumbnail does not
/// count). `Truncated` while more bytes are needed: the MJPEG stream splitter
/// (`mjpeg_stream.rs`) waits for them.
pub fn frame_end(bytes: &[u8]) -> Result<usize, MjpegError> {
    scan_segments(bytes).map(|(_, end)| end)
}

/// Removes every DHT segment: turns an ordinary JPEG into what a UVC webcam sends.
/// Used to make recorded test frames from photos; never on the capture path.
pub fn strip_huffman_tables(bytes: &[u8]) -> Result<Vec<u8>, MjpegError> {
    let (segments, _) = scan_segments(bytes)?;
    let mut out = bytes[..2].to_vec();
    for s in segments.iter().filter(|s| s.marker != DHT) {
        out.extend_from_slice(&bytes[s.start..s.end]);
    }
    out.extend_from_slice(&[0xFF, EOI]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny JPEG made by the `image` crate's encoder (which uses the K.3 tables).
    fn small_jpeg() -> Vec<u8> {
        let img =
            image::RgbImage::from_fn(16, 8, |x, y| image::Rgb([x as u8 * 16, y as u8 * 32, 7]));
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(&img)
            .unwrap();
        out
    }

    #[test]
    fn the_standard_tables_have_as_many_values_as_their_counts_say() {
        for (counts, values) in [
            (&DC_LUMA_COUNTS, &DC_VALUES[..]),
            (&DC_CHROMA_COUNTS, &DC_VALUES[..]),
            (&AC_LUMA_COUNTS, &AC_LUMA_VALUES[..]),
            (&AC_CHROMA_COUNTS, &AC_CHROMA_VALUES[..]),
        ] {
            assert_eq!(
                counts.iter().map(|&c| c as usize).sum::<usize>(),
                values.len()
            );
        }
        assert_eq!(standard_dht_segment().len(), 2 + 0x1A2);
    }

    #[test]
    fn a_frame_without_tables_gets_them_before_its_scan() {
        let stripped = strip_huffman_tables(&small_jpeg()).unwrap();
        let fixed = normalize_frame(&stripped).unwrap();
        let dht = standard_dht_segment();
        let at = fixed
            .windows(dht.len())
            .position(|w| w == dht)
            .expect("DHT inserted");
        assert_eq!(&fixed[at + dht.len()..at + dht.len() + 2], &[0xFF, SOS]);
        image::load_from_memory(&fixed).expect("decodes");
    }

    #[test]
    fn a_complete_jpeg_comes_back_unchanged() {
        let jpeg = small_jpeg();
        assert_eq!(normalize_frame(&jpeg).unwrap(), jpeg);
        assert_eq!(repair(&jpeg).unwrap(), None, "no copy when nothing changes");
    }

    #[test]
    fn padding_after_eoi_is_trimmed() {
        let jpeg = small_jpeg();
        let mut padded = jpeg.clone();
        padded.extend_from_slice(&[0; 100]);
        assert_eq!(normalize_frame(&padded).unwrap(), jpeg);
    }

    #[test]
    fn empty_truncated_and_foreign_frames_are_refused() {
        assert_eq!(normalize_frame(&[]), Err(MjpegError::Empty));
        assert!(matches!(
            normalize_frame(b"\x89PNG\r\n"),
            Err(MjpegError::NotJpeg(_))
        ));
        let jpeg = strip_huffman_tables(&small_jpeg()).unwrap();
        for cut in [2, 3, 5, 20, jpeg.len() / 2, jpeg.len() - 2, jpeg.len() - 1] {
            assert!(
                matches!(normalize_frame(&jpeg[..cut]), Err(MjpegError::Truncated(_))),
                "cut at {cut}: {:?}",
                normalize_frame(&jpeg[..cut])
            );
        }
    }

    #[test]
    fn garbage_where_a_marker_belongs_is_corrupt() {
        let mut jpeg = small_jpeg();
        jpeg[2] = 0x12;
        assert!(matches!(
            normalize_frame(&jpeg),
            Err(MjpegError::Corrupt(_))
        ));
    }
}
