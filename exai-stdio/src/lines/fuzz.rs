//! Property tests of the line transport, run on arbitrary input: a short run in every
//! `cargo test` (proptest's 256 cases each), a long one with `scripts/fuzz.sh`
//! (`PROPTEST_CASES`).
//!
//! The input arrives in arbitrary pieces (a line, a character, a newline cut anywhere), the
//! reader and the writer stall at arbitrary points, and `receive` is dropped at arbitrary
//! stalls and called again — as rmcp's `select!` does. Whatever happens, nothing panics; every
//! complete line comes to exactly one outcome, the one `read_frame` gives that line on its own
//! (a message received intact, an answer written whole, or nothing), a line over the limit is
//! answered and the line after it read; and the reader never holds more than one line of the
//! limit besides its read buffer. `SEEDS` are tricky inputs met in practice, run through the
//! same check. A failure proptest finds is kept in `proptest-regressions/lines/fuzz.txt`.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};

use exai_mcp::{Incoming, read_frame};
use proptest::prelude::*;
use rmcp::service::{RoleServer, RxJsonRpcMessage};
use rmcp::transport::Transport;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{Lines, oversized};

/// Input handed over in pieces; before a piece marked so, the reader first makes its caller
/// wait.
struct Pieces(VecDeque<(bool, Vec<u8>)>);

impl AsyncRead for Pieces {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let Some((stall, piece)) = self.0.front_mut() else {
            return Poll::Ready(Ok(()));
        };
        if std::mem::take(stall) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let n = piece.len().min(buf.remaining());
        buf.put_slice(&piece[..n]);
        piece.drain(..n);
        if piece.is_empty() {
            self.0.pop_front();
        }
        Poll::Ready(Ok(()))
    }
}

/// Output taken at most `most` bytes a write, making its caller wait when `stalls` says so.
struct Slow {
    out: Vec<u8>,
    stalls: VecDeque<bool>,
    most: usize,
}

impl AsyncWrite for Slow {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.stalls.pop_front() == Some(true) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let n = buf.len().min(self.most);
        self.out.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// How the bytes arrive and how the transport is driven.
#[derive(Debug, Clone)]
struct Weather {
    /// Where the input is cut into pieces (modulo its length).
    cuts: Vec<usize>,
    /// Which pieces the reader stalls before.
    read_stalls: Vec<bool>,
    /// Which writes stall.
    write_stalls: VecDeque<bool>,
    /// Most bytes taken by one write.
    most: usize,
    /// At which stalls `receive` is dropped (and called again).
    cancels: Vec<bool>,
}

fn weather() -> impl Strategy<Value = Weather> {
    (
        proptest::collection::vec(any::<usize>(), 0..24),
        proptest::collection::vec(any::<bool>(), 0..24),
        proptest::collection::vec_deque(any::<bool>(), 0..24),
        1usize..256,
        proptest::collection::vec(any::<bool>(), 0..48),
    )
        .prop_map(|(cuts, read_stalls, write_stalls, most, cancels)| Weather {
            cuts,
            read_stalls,
            write_stalls,
            most,
            cancels,
        })
}

/// `input` cut where `weather` says, each piece non-empty.
fn pieces(input: &[u8], weather: &Weather) -> Pieces {
    let mut at: Vec<usize> = weather.cuts.iter().map(|i| i % (input.len() + 1)).collect();
    at.extend([0, input.len()]);
    at.sort_unstable();
    at.dedup();
    let stalls = weather.read_stalls.iter().copied().chain(std::iter::repeat(false));
    Pieces(
        at.windows(2)
            .zip(stalls)
            .map(|(pair, stall)| (stall, input[pair[0]..pair[1]].to_vec()))
            .collect(),
    )
}

/// A message as JSON, to compare (rmcp's messages have no `PartialEq`).
fn as_json(message: &RxJsonRpcMessage<RoleServer>) -> Value {
    serde_json::to_value(message).unwrap_or_else(|e| Value::String(e.to_string()))
}

/// What the transport must make of `input`: the messages to receive and the answers to write,
/// line by line, each line judged on its own.
fn expected(input: &[u8], max: usize) -> (Vec<Value>, Vec<Value>) {
    let (mut messages, mut answers) = (Vec::new(), Vec::new());
    let mut lines: Vec<&[u8]> = input.split(|b| *b == b'\n').collect();
    // After the last newline: a line never completed, so never read.
    lines.pop();
    for line in lines {
        if line.len() > max {
            answers.push(oversized(max));
            continue;
        }
        match read_frame(line) {
            Incoming::Message(message) => messages.push(as_json(&message)),
            Incoming::Answer(answer) => answers.push(answer),
            _ => {}
        }
    }
    (messages, answers)
}

/// Runs the transport over `input` in `weather` and checks every promise.
fn check(input: &[u8], max: usize, weather: &Weather) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    runtime.block_on(async {
        let slow = Slow {
            out: Vec::new(),
            stalls: weather.write_stalls.clone(),
            most: weather.most,
        };
        let mut lines = Lines::new(pieces(input, weather), slow, max);
        let mut cancels = weather.cancels.iter().copied();
        let mut received = Vec::new();
        loop {
            let outcome = {
                let mut receive = pin!(lines.receive());
                poll_fn(|cx| match receive.as_mut().poll(cx) {
                    Poll::Ready(message) => Poll::Ready(Some(message)),
                    Poll::Pending if cancels.next() == Some(true) => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                })
                .await
            };
            prop_assert!(lines.line.len() <= max, "a line of {} bytes held", lines.line.len());
            prop_assert!(
                lines.line.capacity() <= (2 * max).max(8),
                "{} bytes kept for lines",
                lines.line.capacity()
            );
            match outcome {
                Some(Some(message)) => received.push(as_json(&message)),
                Some(None) => break,
                None => {}
            }
        }
        lines.close().await.map_err(|e| TestCaseError::fail(e.to_string()))?;
        let out = std::mem::take(&mut lines.write.lock().await.out);
        prop_assert!(out.is_empty() || out.ends_with(b"\n"), "the last answer is whole");
        let mut written = Vec::new();
        for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let answer: Value = serde_json::from_slice(line)
                .map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(line))))?;
            written.push(answer);
        }
        let (messages, answers) = expected(input, max);
        prop_assert_eq!(received, messages);
        prop_assert_eq!(written, answers);
        Ok(())
    })
}

/// One line of a conversation: requests (with ids of both types and text in any script),
/// responses, blanks, garbage, and lines at and over the limit.
fn line(max: usize) -> impl Strategy<Value = Vec<u8>> {
    let id = prop_oneof![any::<i64>().prop_map(Value::from), ".{0,8}".prop_map(Value::from)];
    let request = (id.clone(), ".{0,24}").prop_map(|(id, prompt)| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "chat", "arguments": {"prompt": prompt}}})
            .to_string()
            .into_bytes()
    });
    let ping = id.clone().prop_map(|id| {
        json!({"jsonrpc": "2.0", "id": id, "method": "ping"})
            .to_string()
            .into_bytes()
    });
    let response = id.prop_map(|id| {
        json!({"jsonrpc": "2.0", "id": id, "result": {}})
            .to_string()
            .into_bytes()
    });
    let garbage = proptest::collection::vec(any::<u8>(), 0..64).prop_map(|mut bytes| {
        bytes.retain(|b| *b != b'\n');
        bytes
    });
    // A request padded to `len` bytes: at the limit, or over it by any amount.
    let padded = |len: usize| {
        let frame = json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": ""}}).to_string();
        let pad = "x".repeat(len.saturating_sub(frame.len()));
        json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": pad}})
            .to_string()
            .into_bytes()
    };
    prop_oneof![
        4 => request,
        2 => ping,
        1 => response,
        1 => Just(Vec::new()),
        1 => Just(b"\r".to_vec()),
        1 => garbage,
        1 => Just(padded(max)),
        1 => (1..3 * max).prop_map(move |over| padded(max + over)),
    ]
}

/// A conversation: lines ended by LF or CRLF, the last one perhaps left incomplete.
fn conversation() -> impl Strategy<Value = (usize, Vec<u8>)> {
    (64usize..512).prop_flat_map(|max| {
        (
            Just(max),
            proptest::collection::vec((line(max), any::<bool>()), 0..10),
            any::<bool>(),
        )
            .prop_map(|(max, lines, incomplete)| {
                let mut input = Vec::new();
                for (line, crlf) in lines {
                    input.extend_from_slice(&line);
                    input.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
                }
                if incomplete {
                    input.extend_from_slice(br#"{"jsonrpc":"2.0","id":1,"#);
                }
                (max, input)
            })
    })
}

/// Hand-written inputs: a character cut in half, CRLF, empty lines, deep and big JSON, ids of
/// every type, a line at and over the limit of `SEED_MAX` bytes.
const SEEDS: &[&[u8]] = &[
    b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"chat\",\"arguments\":{\"prompt\":\"\xe2\x82\xac\xf0\x9f\x98\x80\"}}}\n",
    b"{\"jsonrpc\":\"2.0\",\"id\":\"a\xc3\xa9\",\"method\":\"ping\"}\r\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\r\n",
    b"\n\n\r\n \n",
    b"{\"jsonrpc\":\"2.0\",\"id\":\"\xc3\",\"method\":\"ping\"}\n",
    b"{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"ping\"}\n{\"jsonrpc\":\"2.0\",\"id\":-1,\"method\":\"ping\"}\n{\"jsonrpc\":\"2.0\",\"id\":\"\",\"method\":\"ping\"}\n",
    b"{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"ping\"}\n{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"ping\"}\n{\"jsonrpc\":\"2.0\",\"id\":[1],\"method\":\"ping\"}\n{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"ping\"}\n{\"jsonrpc\":\"2.0\",\"id\":true,\"method\":\"ping\"}\n",
    b"{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{}}\n{\"jsonrpc\":\"2.0\",\"id\":9,\"error\":\"x\"}\n",
    b"not json\n42\n{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\"}",
    b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n",
];

/// The limit the seeds run under.
const SEED_MAX: usize = 256;

/// Inputs built at run time: a line exactly at the limit, one just over it and one far over it,
/// each followed by a request that must be read.
fn big_seeds() -> Vec<Vec<u8>> {
    let padded = |len: usize| {
        let frame = json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": ""}}).to_string();
        let pad = "é".repeat(len.saturating_sub(frame.len()) / 2);
        json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": pad}}).to_string()
    };
    let next = r#"{"jsonrpc":"2.0","id":"next","method":"ping"}"#;
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    [padded(SEED_MAX), padded(SEED_MAX + 2), padded(SEED_MAX * 400), deep]
        .into_iter()
        .map(|line| format!("{line}\n{next}\n").into_bytes())
        .collect()
}

proptest! {
    #[test]
    fn arbitrary_bytes_in_any_pieces_come_to_one_outcome_a_line(
        bytes in proptest::collection::vec(prop_oneof![9 => any::<u8>(), 1 => Just(b'\n')], 0..1024),
        max in 1usize..128,
        weather in weather(),
    ) {
        check(&bytes, max, &weather)?;
    }

    #[test]
    fn every_line_in_any_pieces_comes_to_its_one_outcome((max, input) in conversation(), weather in weather()) {
        check(&input, max, &weather)?;
    }

    #[test]
    fn an_oversized_line_is_answered_and_the_next_one_read(
        over in 1usize..4096,
        max in 64usize..256,
        crlf in any::<bool>(),
        weather in weather(),
    ) {
        let end = if crlf { "\r\n" } else { "\n" };
        let input = format!(
            "{}{end}{}{end}",
            "x".repeat(max + over),
            json!({"jsonrpc": "2.0", "id": "after", "method": "ping"}),
        );
        check(input.as_bytes(), max, &weather)?;
    }
}

#[test]
fn the_seed_inputs_keep_every_promise_in_any_pieces() {
    let whole = Weather {
        cuts: Vec::new(),
        read_stalls: Vec::new(),
        write_stalls: VecDeque::new(),
        most: usize::MAX,
        cancels: Vec::new(),
    };
    for seed in SEEDS.iter().map(|s| s.to_vec()).chain(big_seeds()) {
        // Whole; then a byte a piece, every write stalled once and every stall cancelled.
        let bytewise = Weather {
            cuts: (0..seed.len()).collect(),
            read_stalls: vec![true; seed.len()],
            write_stalls: [true, false].repeat(64).into(),
            most: 3,
            cancels: vec![true; 4 * seed.len()],
        };
        for weather in [&whole, &bytewise] {
            if let Err(e) = check(&seed, SEED_MAX, weather) {
                panic!("{e}: {}", String::from_utf8_lossy(&seed[..seed.len().min(200)]));
            }
        }
    }
}

#[test]
fn a_line_of_exactly_the_limit_is_read_and_one_byte_more_is_refused() {
    let calm = Weather {
        cuts: Vec::new(),
        read_stalls: Vec::new(),
        write_stalls: VecDeque::new(),
        most: usize::MAX,
        cancels: Vec::new(),
    };
    let line = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string();
    let input = format!("{line}\n{line}\r\n");
    let mut lines = Lines::new(pieces(input.as_bytes(), &calm), Vec::new(), line.len());
    let runtime = tokio::runtime::Builder::new_current_thread().build();
    let Ok(runtime) = runtime else { panic!("no runtime") };
    runtime.block_on(async {
        assert!(lines.receive().await.is_some(), "the newline is not part of the line");
        assert!(lines.receive().await.is_none(), "the carriage return is");
    });
    assert_eq!(
        serde_json::from_slice::<Value>(&lines.write.try_lock().map(|w| w.clone()).unwrap_or_default()).ok(),
        Some(oversized(line.len()))
    );
}

#[test]
fn an_answer_is_written_whole_when_receive_is_dropped_while_it_waits_for_the_writer() {
    let weather = Weather {
        cuts: Vec::new(),
        read_stalls: Vec::new(),
        write_stalls: [true, false, true].into(),
        most: 5,
        cancels: vec![true; 8],
    };
    let input = b"not json\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n";
    if let Err(e) = check(input, 256, &weather) {
        panic!("{e}");
    }
}
