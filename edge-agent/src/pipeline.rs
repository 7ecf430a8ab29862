//! The frame pipeline: preparer threads read, decode and resize the next frames while
//! the caller's thread runs inference on the current one, so a two-core device uses
//! both cores. Decoding a camera frame takes several times longer than inferring it,
//! so there is one preparer per core (a second one uses the time the inference thread
//! leaves idle); they take frames strictly in turn, so results come out in input
//! order. Channels are bounded (back-pressure, not memory growth) and tensors are
//! recycled, so a frame allocates only its decoded image.

use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use image::ImageFormat;

use crate::inference::{top_k, InferenceBackend, InferenceError, LabelScore};
use crate::model::InputSection;
use crate::preprocess::{DecodeError, Preprocessor};

/// A frame ready for inference.
pub struct PreparedFrame {
    /// The file it came from (or a camera frame's name).
    pub source: PathBuf,
    /// The encoded bytes a reviewer will see: the file's own, or, for a JPEG that was
    /// not standalone (data after EOI, no Huffman tables), the repaired JPEG.
    pub bytes: Vec<u8>,
    pub format: ImageFormat,
    /// The upright size of the image in the file.
    pub width: u32,
    pub height: u32,
    /// The decoded, upright RGB image (the review policy hashes it): the whole image,
    /// or, when the preprocessor reduces JPEGs while decoding, 1/`reduction` of it
    /// (never smaller than the model input).
    pub image: image::RgbImage,
    /// 1, 4 or 8 (see `preprocess::decode_reduced`).
    pub reduction: u8,
    /// The model's input tensor.
    pub tensor: Vec<f32>,
    pub decode_time: Duration,
    pub resize_time: Duration,
}

/// Why a frame could not be prepared. Displayed after the file name.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("cannot read: {0}")]
    Read(#[from] std::io::Error),
    #[error("{0}")]
    Decode(#[from] DecodeError),
}

/// Decodes `bytes` and fills `tensor` with the model input.
pub fn prepare_frame(
    pre: &mut Preprocessor,
    source: PathBuf,
    bytes: Vec<u8>,
    mut tensor: Vec<f32>,
) -> Result<PreparedFrame, DecodeError> {
    let t0 = Instant::now();
    let mut decoded = pre.decode(&bytes)?;
    let bytes = decoded.repaired.take().unwrap_or(bytes);
    let t1 = Instant::now();
    tensor.resize(pre.input_len(), 0.0);
    pre.prepare(&decoded.image, &mut tensor);
    let t2 = Instant::now();
    Ok(PreparedFrame {
        source,
        bytes,
        format: decoded.format,
        width: decoded.width,
        height: decoded.height,
        image: decoded.image,
        reduction: decoded.reduction,
        tensor,
        decode_time: t1 - t0,
        resize_time: t2 - t1,
    })
}

/// Frames prepared on background threads, in input order.
pub struct Preparer {
    /// One channel per worker; frame i comes from worker i % workers.
    frames: Vec<Receiver<(PathBuf, Result<PreparedFrame, FrameError>)>>,
    recycle: Vec<SyncSender<Vec<f32>>>,
    /// The worker the next frame comes from.
    cursor: usize,
    dispatch: Arc<(Mutex<Dispatch>, Condvar)>,
    threads: Vec<JoinHandle<()>>,
}

/// Whose turn it is to take the next path, so that worker k takes exactly the
/// frames k, k + n, k + 2n, ... and the consumer can read them back in order.
struct Dispatch {
    turn: usize,
    done: bool,
}

/// One preparer per core, at most 4 (decoding more frames at once than there are
/// cores only costs memory).
pub fn default_preparers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4)
}

/// How a `Preparer` prepares frames.
#[derive(Debug, Clone)]
pub struct PreparerOptions {
    /// Reduce large JPEGs while decoding (see `preprocess::decode_reduced`).
    pub reduced_decode: bool,
    /// Keep the decoded pixels in `PreparedFrame::image`. Without them a frame in
    /// flight holds only its bytes and tensor, which is what classifying needs.
    pub keep_pixels: bool,
    /// About how many frames may wait ready.
    pub depth: usize,
    /// Preparer threads.
    pub workers: usize,
}

impl Default for PreparerOptions {
    fn default() -> Self {
        PreparerOptions {
            reduced_decode: true,
            keep_pixels: true,
            depth: 2,
            workers: default_preparers(),
        }
    }
}

impl Preparer {
    /// Starts `default_preparers()` threads over `paths`, reducing large JPEGs while
    /// decoding; at most about `depth` frames wait ready.
    pub fn spawn(
        paths: impl IntoIterator<Item = PathBuf, IntoIter: Send + 'static>,
        input: &InputSection,
        depth: usize,
    ) -> Self {
        let options = PreparerOptions {
            depth,
            ..PreparerOptions::default()
        };
        Self::spawn_with(paths, input, &options)
    }

    pub fn spawn_with(
        paths: impl IntoIterator<Item = PathBuf, IntoIter: Send + 'static>,
        input: &InputSection,
        options: &PreparerOptions,
    ) -> Self {
        let PreparerOptions {
            reduced_decode,
            keep_pixels,
            depth,
            workers,
        } = options.clone();
        let workers = workers.max(1);
        let per_worker = depth.max(1).div_ceil(workers);
        let paths = Arc::new(Mutex::new(paths.into_iter()));
        let dispatch = Arc::new((
            Mutex::new(Dispatch {
                turn: 0,
                done: false,
            }),
            Condvar::new(),
        ));
        let (mut frames, mut recycle, mut threads) = (vec![], vec![], vec![]);
        for k in 0..workers {
            let (frame_tx, frame_rx) = sync_channel(per_worker);
            let (recycle_tx, recycled) = sync_channel::<Vec<f32>>(per_worker + 2);
            let mut pre = Preprocessor::new(input).with_reduced_decode(reduced_decode);
            let (paths, dispatch) = (paths.clone(), dispatch.clone());
            let thread = std::thread::Builder::new()
                .name(format!("frame-preparer-{k}"))
                .spawn(move || loop {
                    let Some(path) = take_turn(&dispatch, k, workers, &paths) else {
                        return;
                    };
                    let tensor = recycled.try_recv().unwrap_or_default();
                    let result = match std::fs::read(&path) {
                        Err(e) => Err(FrameError::Read(e)),
                        Ok(bytes) => prepare_frame(&mut pre, path.clone(), bytes, tensor)
                            .map(|mut frame| {
                                if !keep_pixels {
                                    frame.image = image::RgbImage::new(0, 0);
                                }
                                frame
                            })
                            .map_err(FrameError::Decode),
                    };
                    if frame_tx.send((path, result)).is_err() {
                        finish(&dispatch); // the consumer stopped
                        return;
                    }
                })
                .expect("spawning a thread");
            frames.push(frame_rx);
            recycle.push(recycle_tx);
            threads.push(thread);
        }
        Preparer {
            frames,
            recycle,
            cursor: 0,
            dispatch,
            threads,
        }
    }

    /// Hands a used tensor back so a later frame can reuse its allocation.
    pub fn recycle(&self, tensor: Vec<f32>) {
        let n = self.recycle.len();
        let _ = self.recycle[(self.cursor + n - 1) % n].try_send(tensor);
    }
}

/// Waits for worker `k`'s turn and takes the next path (None: no more work).
fn take_turn<I: Iterator<Item = PathBuf>>(
    dispatch: &(Mutex<Dispatch>, Condvar),
    k: usize,
    workers: usize,
    paths: &Mutex<I>,
) -> Option<PathBuf> {
    let (lock, turn_changed) = dispatch;
    let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
    while state.turn != k && !state.done {
        state = turn_changed.wait(state).unwrap_or_else(|e| e.into_inner());
    }
    if state.done {
        return None;
    }
    let next = paths.lock().unwrap_or_else(|e| e.into_inner()).next();
    state.turn = (k + 1) % workers;
    state.done = next.is_none();
    turn_changed.notify_all();
    next
}

fn finish(dispatch: &(Mutex<Dispatch>, Condvar)) {
    let (lock, turn_changed) = dispatch;
    lock.lock().unwrap_or_else(|e| e.into_inner()).done = true;
    turn_changed.notify_all();
}

impl Iterator for Preparer {
    type Item = (PathBuf, Result<PreparedFrame, FrameError>);

    fn next(&mut self) -> Option<Self::Item> {
        // Frames are dealt in turn, so the first worker without a next frame marks
        // the end of the input.
        let item = self.frames[self.cursor].recv().ok()?;
        self.cursor = (self.cursor + 1) % self.frames.len();
        Some(item)
    }
}

impl Drop for Preparer {
    fn drop(&mut self) {
        // Stop handing out work, unblock senders waiting on full channels, then wait.
        finish(&self.dispatch);
        self.frames.clear();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A classified frame.
#[derive(Debug, Clone)]
pub struct Classification {
    pub scores: Vec<f32>,
    pub top_k: Vec<LabelScore>,
    pub infer_time: Duration,
}

/// The backend plus what turns its raw scores into labels.
pub struct Classifier {
    backend: Box<dyn InferenceBackend>,
    labels: Vec<String>,
    k: usize,
}

impl Classifier {
    /// `backend` is a `Box<dyn InferenceBackend>` or a `LoadedBackend`.
    pub fn new(
        backend: impl Into<Box<dyn InferenceBackend>>,
        labels: Vec<String>,
        k: usize,
    ) -> Self {
        Classifier {
            backend: backend.into(),
            labels,
            k,
        }
    }

    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Runs the model on a prepared tensor.
    pub fn classify(&mut self, tensor: &[f32]) -> Result<Classification, InferenceError> {
        let t0 = Instant::now();
        self.backend.input_mut().copy_from_slice(tensor);
        let scores = self.backend.run()?.to_vec();
        let infer_time = t0.elapsed();
        let top_k = top_k(&scores, &self.labels, self.k);
        Ok(Classification {
            scores,
            top_k,
            infer_time,
        })
    }
}
