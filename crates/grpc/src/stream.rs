//! Interactive streams: a call whose messages are sent and received as it
//! goes (a chat, a subscription answered step by step), for methods of any
//! kind, ended by [`GrpcStream::finish`] with the call's status.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use prost::Message;
use prost_reflect::{DynamicMessage, MethodDescriptor};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use tonic::codec::Streaming;
use tonic::{Code, Status};

use crate::call::{CallOptions, CallOutcome, GrpcChannel, Metadata, prepare, request};
use crate::codec::DynamicCodec;

/// Messages sent and not yet taken by the connection.
const SEND_BUFFER: usize = 64;

/// What a receive found.
#[derive(Debug)]
pub enum StreamReceived {
    /// A reply.
    Message(DynamicMessage),
    /// The server ended its side (the status is [`GrpcStream::finish`]'s).
    Ended,
    /// Nothing within the time allowed.
    TimedOut,
}

type Opening = JoinHandle<Result<tonic::Response<Streaming<DynamicMessage>>, Status>>;

enum State {
    /// The call is under way; the server has not answered yet.
    Opening(Opening),
    /// The server answered: its replies.
    Open(Box<Streaming<DynamicMessage>>),
    /// The call ended with this status.
    Ended(Status),
}

struct Replies {
    state: State,
    metadata: Metadata,
}

/// One interactive call. Dropping it cancels the call.
pub struct GrpcStream {
    sender: RefCell<Option<mpsc::Sender<DynamicMessage>>>,
    replies: Mutex<Replies>,
    started: Instant,
    deadline: Option<Instant>,
    sent: Cell<usize>,
    received: Cell<usize>,
    reply_bytes: Cell<usize>,
    /// When the status came (the call's time ends there, not when the
    /// plan finished it).
    ended_at: Cell<Option<Instant>>,
}

impl Drop for GrpcStream {
    fn drop(&mut self) {
        if let State::Opening(opening) = &self.replies.get_mut().state {
            opening.abort();
        }
    }
}

impl GrpcChannel {
    /// Start an interactive call of `method`: nothing is sent until
    /// [`GrpcStream::send`]; the deadline of `options` covers the whole call.
    pub fn open_stream(&self, method: &MethodDescriptor, options: &CallOptions) -> Result<GrpcStream, Status> {
        let (metadata, path) = prepare(method, options)?;
        let (sender, outgoing) = mpsc::channel::<DynamicMessage>(SEND_BUFFER);
        let messages = futures_util::stream::unfold(outgoing, |mut outgoing| async move {
            outgoing.recv().await.map(|message| (message, outgoing))
        });
        let mut grpc = tonic::client::Grpc::new(self.channel());
        if let Some(encoding) = options.compression {
            grpc = grpc.send_compressed(encoding).accept_compressed(encoding);
        }
        let codec = DynamicCodec::new(method.output());
        let call = request(messages, &metadata, options);
        // On a task of its own: the server may answer only after the first
        // messages, which the plan sends meanwhile.
        let opening = tokio::spawn(async move {
            grpc.ready().await.map_err(|e| Status::unavailable(format!("connecting: {e}")))?;
            grpc.streaming(call, path, codec).await
        });
        let started = Instant::now();
        Ok(GrpcStream {
            sender: RefCell::new(Some(sender)),
            replies: Mutex::new(Replies { state: State::Opening(opening), metadata: Metadata::default() }),
            started,
            // A deadline too far to represent is no deadline.
            deadline: options.timeout.and_then(|limit| started.checked_add(limit)),
            sent: Cell::new(0),
            received: Cell::new(0),
            reply_bytes: Cell::new(0),
            ended_at: Cell::new(None),
        })
    }
}

impl GrpcStream {
    /// Send a message, waiting at most `timeout` for room (the server
    /// reads slower than the plan writes). After [`Self::close_send`] or
    /// the call's end it fails.
    pub async fn send(&self, message: DynamicMessage, timeout: Duration) -> Result<(), Status> {
        let Some(sender) = self.sender.borrow().clone() else {
            return Err(Status::failed_precondition("the stream's sending side is closed"));
        };
        match tokio::time::timeout(timeout, sender.send(message)).await {
            Ok(Ok(())) => {
                self.sent.set(self.sent.get() + 1);
                Ok(())
            }
            Ok(Err(_)) => Err(Status::failed_precondition("the call has ended")),
            Err(_) => Err(Status::deadline_exceeded(format!("no room to send within {timeout:?}"))),
        }
    }

    /// No more messages: the server sees the end of the request stream.
    pub fn close_send(&self) {
        self.sender.borrow_mut().take();
    }

    /// The next reply, waiting at most `timeout` (and never past the
    /// call's deadline).
    pub async fn receive(&self, timeout: Duration) -> StreamReceived {
        let now = tokio::time::Instant::now();
        let mut until = now.checked_add(timeout).unwrap_or(now + Duration::from_secs(86_400 * 365));
        if let Some(deadline) = self.deadline {
            until = until.min(tokio::time::Instant::from_std(deadline));
        }
        let Ok(mut replies) = tokio::time::timeout_at(until, self.replies.lock()).await else {
            return StreamReceived::TimedOut;
        };
        loop {
            let Replies { state, metadata } = &mut *replies;
            let step = match state {
                State::Ended(_) => return StreamReceived::Ended,
                State::Opening(opening) => match tokio::time::timeout_at(until, opening).await {
                    Err(_) => None,
                    Ok(Ok(Ok(response))) => {
                        metadata.extend(response.metadata());
                        Some(State::Open(Box::new(response.into_inner())))
                    }
                    Ok(Ok(Err(status))) => {
                        metadata.extend(status.metadata());
                        Some(State::Ended(status))
                    }
                    Ok(Err(e)) => Some(State::Ended(Status::internal(format!("the call's task: {e}")))),
                },
                State::Open(stream) => match tokio::time::timeout_at(until, stream.message()).await {
                    Err(_) => None,
                    Ok(Ok(Some(reply))) => {
                        self.received.set(self.received.get() + 1);
                        self.reply_bytes.set(self.reply_bytes.get() + reply.encoded_len());
                        return StreamReceived::Message(reply);
                    }
                    Ok(Ok(None)) => {
                        let trailers = stream.trailers().await;
                        Some(State::Ended(match trailers {
                            Ok(trailers) => {
                                if let Some(trailers) = trailers {
                                    metadata.extend(&trailers);
                                }
                                Status::ok("")
                            }
                            Err(status) => status,
                        }))
                    }
                    Ok(Err(status)) => {
                        metadata.extend(status.metadata());
                        Some(State::Ended(status))
                    }
                },
            };
            match step {
                Some(next) => {
                    if matches!(next, State::Ended(_)) {
                        self.ended_at.set(Some(Instant::now()));
                    }
                    *state = next;
                }
                None if self.deadline.is_some_and(|d| Instant::now() >= d) => {
                    if let State::Opening(opening) = state {
                        opening.abort();
                    }
                    self.ended_at.set(Some(Instant::now()));
                    *state = State::Ended(Status::deadline_exceeded("no end within the call's timeout"));
                }
                None => return StreamReceived::TimedOut,
            }
        }
    }

    /// End the call: close the sending side, read (and count) the replies
    /// left, within `timeout` (and the call's deadline), and give the
    /// outcome: its status, metadata, messages sent and reply bytes.
    pub async fn finish(&self, timeout: Duration) -> CallOutcome {
        self.close_send();
        let now = Instant::now();
        let until = now.checked_add(timeout).unwrap_or(now + Duration::from_secs(86_400 * 365));
        loop {
            match self.receive(until.saturating_duration_since(Instant::now())).await {
                StreamReceived::Message(_) => continue,
                StreamReceived::Ended => break,
                StreamReceived::TimedOut => {
                    // Another receive of the plan's may hold the replies:
                    // wait for it no longer than a second.
                    let Ok(mut replies) = tokio::time::timeout(Duration::from_secs(1), self.replies.lock()).await
                    else {
                        break;
                    };
                    if let State::Opening(opening) = &replies.state {
                        opening.abort();
                    }
                    if !matches!(replies.state, State::Ended(_)) {
                        replies.state = State::Ended(Status::deadline_exceeded(format!(
                            "the stream did not end within {timeout:?} of finishing"
                        )));
                        self.ended_at.set(Some(Instant::now()));
                    }
                    break;
                }
            }
        }
        let replies = tokio::time::timeout(Duration::from_secs(1), self.replies.lock()).await.ok();
        let status = match replies.as_deref().map(|r| &r.state) {
            Some(State::Ended(status)) => status.clone(),
            _ => Status::deadline_exceeded("the stream did not end (another receive still held it)"),
        };
        let metadata = replies.as_deref().map(|r| (r.metadata.text.clone(), r.metadata.binary.clone()));
        let (metadata, binary_metadata) = metadata.unwrap_or_default();
        let elapsed = self.ended_at.get().unwrap_or_else(Instant::now).duration_since(self.started);
        CallOutcome {
            code: status.code(),
            message: if status.code() == Code::Ok { String::new() } else { status.message().to_owned() },
            reply: None,
            stream: Vec::new(),
            sent: self.sent.get(),
            reply_size: self.reply_bytes.get(),
            metadata,
            binary_metadata,
            elapsed,
        }
    }

    /// Replies received so far.
    pub fn received(&self) -> usize {
        self.received.get()
    }
}
