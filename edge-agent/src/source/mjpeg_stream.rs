//! An MJPEG byte stream cut into frames: what `rpicam-vid --codec mjpeg -o -`,
//! `ffmpeg ... -f mjpeg -` and `gst-launch-1.0 ... ! jpegenc ! fdsink` write to their
//! standard output, JPEG after JPEG with nothing in between (or, from an IP camera's
//! HTTP stream, multipart headers in between, which are skipped). Pure: bytes go in
//! with [`MjpegSplitter::push`], frames come out of [`MjpegSplitter::next_frame`]; the
//! command source (`command.rs`) does the reading.
//!
//! A frame is found by walking its marker structure from SOI to EOI
//! ([`super::mjpeg::frame_end`]), not by searching for `FF D9`, which also ends the
//! thumbnail inside an EXIF segment. Bytes before an SOI are skipped; a frame whose
//! structure is broken is dropped and the search resumes after its SOI; a frame
//! larger than the limit without an end is dropped, so memory stays bounded.

use super::mjpeg::{frame_end, MjpegError};

/// Why bytes of the stream were dropped instead of becoming a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Dropped {
    #[error("corrupt frame ({0}); looking for the next one")]
    Corrupt(String),
    #[error("no end of frame within {0} bytes (max_frame_bytes); looking for the next one")]
    TooLarge(usize),
}

/// Cuts a stream of concatenated JPEGs into frames (see the module docs).
#[derive(Debug)]
pub struct MjpegSplitter {
    buf: Vec<u8>,
    max_frame_bytes: usize,
    /// Bytes skipped before an SOI so far (multipart headers, garbage).
    pub skipped: u64,
}

const SOI: [u8; 2] = [0xFF, 0xD8];

impl MjpegSplitter {
    pub fn new(max_frame_bytes: usize) -> Self {
        MjpegSplitter {
            buf: Vec::new(),
            max_frame_bytes,
            skipped: 0,
        }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes held that are not a whole frame yet (at the end of a stream: a frame cut
    /// short).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Forgets the bytes held (the stream ended; a new one starts from nothing).
    pub fn reset(&mut self) {
        self.buf.clear();
    }

    /// The next whole frame, a report of bytes dropped, or `None` until more bytes come.
    pub fn next_frame(&mut self) -> Option<Result<Vec<u8>, Dropped>> {
        loop {
            match self.buf.windows(2).position(|w| w == SOI) {
                Some(0) => {}
                Some(at) => self.skip(at),
                None => {
                    // Keep a last 0xFF: it may be the first half of the next SOI.
                    let keep = usize::from(self.buf.last() == Some(&0xFF));
                    self.skip(self.buf.len() - keep);
                    return None;
                }
            }
            return match frame_end(&self.buf) {
                Ok(end) => {
                    let rest = self.buf.split_off(end);
                    Some(Ok(std::mem::replace(&mut self.buf, rest)))
                }
                Err(MjpegError::Truncated(_)) if self.buf.len() > self.max_frame_bytes => {
                    self.skip(SOI.len());
                    Some(Err(Dropped::TooLarge(self.max_frame_bytes)))
                }
                Err(MjpegError::Truncated(_)) => None,
                Err(MjpegError::Corrupt(why)) => {
                    self.skip(SOI.len());
                    Some(Err(Dropped::Corrupt(why)))
                }
                Err(MjpegError::Empty | MjpegError::NotJpeg(_)) => {
                    self.skip(1); // cannot happen at an SOI; never loop on it
                    continue;
                }
            };
        }
    }

    fn skip(&mut self, n: usize) {
        self.buf.drain(..n);
        self.skipped += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small JPEG from the `image` crate's encoder; `seed` varies its pixels.
    fn jpeg(seed: u8) -> Vec<u8> {
        let img = image::RgbImage::from_fn(24, 16, |x, y| {
            image::Rgb([x as u8 * 9 + seed, y as u8 * 13, seed.wrapping_mul(7)])
        });
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
            .encode_image(&img)
            .unwrap();
        out
    }

    fn frames_of(splitter: &mut MjpegSplitter) -> Vec<Result<Vec<u8>, Dropped>> {
        std::iter::from_fn(|| splitter.next_frame()).collect()
    }

    #[test]
    fn concatenated_jpegs_come_out_whole_in_order() {
        let (a, b, c) = (jpeg(1), jpeg(2), jpeg(3));
        let mut s = MjpegSplitter::new(1 << 20);
        s.push(&[a.clone(), b.clone(), c.clone()].concat());
        assert_eq!(frames_of(&mut s), [Ok(a), Ok(b), Ok(c)]);
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn a_frame_read_in_pieces_of_any_size_comes_out_once_whole() {
        let (a, b) = (jpeg(4), jpeg(5));
        let stream = [a.clone(), b.clone()].concat();
        for piece in [1, 2, 3, 7, 64, 1000] {
            let mut s = MjpegSplitter::new(1 << 20);
            let mut got = Vec::new();
            for chunk in stream.chunks(piece) {
                s.push(chunk);
                got.extend(frames_of(&mut s));
            }
            assert_eq!(got, [Ok(a.clone()), Ok(b.clone())], "pieces of {piece}");
        }
    }

    #[test]
    fn multipart_headers_between_frames_are_skipped() {
        let (a, b) = (jpeg(6), jpeg(7));
        let header = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: 99\r\n\r\n";
        let mut s = MjpegSplitter::new(1 << 20);
        s.push(&[&header[..], &a, b"\r\n", header, &b, b"\r\n"].concat());
        assert_eq!(frames_of(&mut s), [Ok(a), Ok(b)]);
        assert_eq!(s.skipped, 2 * header.len() as u64 + 4);
    }

    #[test]
    fn a_corrupt_frame_is_dropped_and_the_next_one_still_comes() {
        let (mut bad, good) = (jpeg(8), jpeg(9));
        bad[2] = 0x12; // garbage where the first marker belongs
        let mut s = MjpegSplitter::new(1 << 20);
        s.push(&[bad, good.clone()].concat());
        let got = frames_of(&mut s);
        assert!(matches!(got[0], Err(Dropped::Corrupt(_))), "{got:?}");
        assert_eq!(got[1..], [Ok(good)]);
    }

    #[test]
    fn a_frame_without_an_end_is_dropped_at_the_limit() {
        let a = jpeg(10);
        let mut s = MjpegSplitter::new(a.len() / 2);
        s.push(&a[..a.len() - 2]); // no EOI yet, already over the limit
        assert_eq!(frames_of(&mut s), [Err(Dropped::TooLarge(a.len() / 2))]);
        assert!(s.pending() < a.len());
    }

    #[test]
    fn a_frame_cut_by_the_end_of_the_stream_stays_pending() {
        let a = jpeg(11);
        let mut s = MjpegSplitter::new(1 << 20);
        s.push(&a[..a.len() / 2]);
        assert_eq!(frames_of(&mut s), []);
        assert_eq!(s.pending(), a.len() / 2);
        s.reset();
        s.push(&a);
        assert_eq!(frames_of(&mut s), [Ok(a)]);
    }

    #[test]
    fn an_soi_split_across_reads_is_found() {
        let a = jpeg(12);
        let mut s = MjpegSplitter::new(1 << 20);
        s.push(b"junk\xFF");
        assert_eq!(frames_of(&mut s), []);
        s.push(&a[1..]);
        assert_eq!(frames_of(&mut s), [Ok(a)]);
    }
}
