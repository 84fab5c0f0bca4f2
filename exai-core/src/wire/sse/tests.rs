//! The cutter and the event reader against every line end the SSE spec allows, reads split
//! anywhere, a `\r` at the end of a read, and the cap on what is held.

use super::*;

/// The line ends a line may have.
const LINE_ENDS: [&str; 3] = ["\n", "\r\n", "\r"];

/// `(name, data)` of each event.
fn read(block: &[u8]) -> Vec<(String, String)> {
    events(block)
        .map(|e| {
            (
                String::from_utf8_lossy(e.name).into_owned(),
                String::from_utf8_lossy(&e.data).into_owned(),
            )
        })
        .collect()
}

/// `stream` pushed in pieces cut at `cuts`: the blocks handed on, and what was left at the end.
fn cut(stream: &[u8], cuts: &[usize]) -> (Vec<Bytes>, Option<Bytes>) {
    let mut cutter = EventCutter::default();
    let mut blocks = Vec::new();
    let mut from = 0;
    for &to in cuts.iter().chain([&stream.len()]) {
        match cutter.push(Bytes::copy_from_slice(&stream[from..to])) {
            Ok(Some(block)) => blocks.push(block),
            Ok(None) => {}
            Err(e) => panic!("{e}"),
        }
        from = to;
    }
    (blocks, cutter.rest())
}

/// Whether an event ends where `block` ends, the body having ended.
fn ends_whole(block: &[u8]) -> bool {
    ends_event(block, Next::End)
}

#[test]
fn reads_that_end_at_an_event_end_go_out_untouched() {
    let whole = b"event: a\ndata: {\"x\":1}\n\ndata: [DONE]\n\n";
    let mut cutter = EventCutter::default();
    let chunk = Bytes::from_static(whole);
    let out = cutter.push(chunk.clone()).ok().flatten();
    assert_eq!(out.as_ref().map(|b| b.as_ptr()), Some(chunk.as_ptr()), "no copy");
    assert!(cutter.rest().is_none());
}

#[test]
fn every_pair_of_line_ends_ends_an_event() {
    for line in LINE_ENDS {
        for blank in LINE_ENDS {
            let stream = format!("event: a{line}data: {{\"x\":1}}{line}{blank}data: [DONE]{line}{blank}");
            let (blocks, rest) = cut(stream.as_bytes(), &[]);
            let all: Vec<u8> = blocks
                .iter()
                .flat_map(|b| b.to_vec())
                .chain(rest.iter().flat_map(|b| b.to_vec()))
                .collect();
            let label = format!("line end {line:?}, blank line {blank:?}");
            if line == "\r" && blank == "\n" {
                // `\r` then `\n` is one line end (`\r\n`), not a line end and a blank line.
                assert_eq!(read(&all), vec![("a".into(), "{\"x\":1}\n[DONE]".into())], "{label}");
                continue;
            }
            assert_eq!(all, stream.as_bytes(), "{label}: every byte handed on");
            assert_eq!(
                read(&all),
                vec![("a".into(), "{\"x\":1}".into()), (String::new(), "[DONE]".into())],
                "{label}"
            );
            // The first event is cut off from the second wherever the read ends after it.
            let first_end = stream.find("data: [DONE]").unwrap_or_default();
            let (blocks, _) = cut(stream.as_bytes(), &[first_end]);
            assert_eq!(blocks.first().map(|b| b.len()), Some(first_end), "{label}");
        }
    }
}

#[test]
fn a_stream_split_at_any_byte_or_two_gives_the_same_events() {
    // Every line end and blank line the spec allows, in one stream.
    let stream = concat!(
        ": hello\n\n",
        "event: message_start\r\ndata: {\"a\":1}\r\n\r\n",
        "data: one\rdata: two\r\r",
        "event: x\ndata:{\"b\":2}\n\r\n",
        "data: cr-lf-lf\r\n\n",
        "id: 7\r\ndata: three\r\n\r",
        "data: lf-cr\n\r",
        "data\n\n",
        "data: [DONE]\r\r",
    )
    .as_bytes();
    let want = vec![
        ("message_start".to_string(), "{\"a\":1}".to_string()),
        (String::new(), "one\ntwo".to_string()),
        ("x".to_string(), "{\"b\":2}".to_string()),
        (String::new(), "cr-lf-lf".to_string()),
        (String::new(), "three".to_string()),
        (String::new(), "lf-cr".to_string()),
        (String::new(), "[DONE]".to_string()),
    ];
    assert_eq!(read(stream), want, "read whole");
    let check = |cuts: &[usize]| {
        let (blocks, rest) = cut(stream, cuts);
        let mut all = Vec::new();
        for block in &blocks {
            assert!(
                ends_whole(block),
                "cuts {cuts:?}: a block ends at an event's end: {block:?}"
            );
            assert!(!block.starts_with(b"\n"), "cuts {cuts:?}: no `\\r\\n` split: {block:?}");
            all.extend_from_slice(block);
        }
        all.extend(rest.iter().flat_map(|r| r.to_vec()));
        assert_eq!(all, stream, "cuts {cuts:?}: every byte, in order");
        let got: Vec<_> = blocks.iter().chain(&rest).flat_map(|b| read(b)).collect();
        assert_eq!(got, want, "cuts {cuts:?}");
    };
    for i in 0..=stream.len() {
        check(&[i]);
        for j in i..=stream.len() {
            check(&[i, j]);
        }
    }
}

#[test]
fn a_cr_at_the_end_of_a_read_waits_for_the_next_byte() {
    // `\n\r` may be a line end and a blank line, or a line end and the start of a `\r\n`.
    let mut cutter = EventCutter::default();
    assert_eq!(cutter.push(Bytes::from_static(b"data: a\n\r")), Ok(None), "held");
    let block = cutter.push(Bytes::from_static(b"\ndata: b\n\n")).ok().flatten();
    assert_eq!(block.as_deref(), Some(&b"data: a\n\r\ndata: b\n\n"[..]));
    // A byte other than `\n` says the `\r` was a blank line of its own.
    let mut cutter = EventCutter::default();
    assert_eq!(cutter.push(Bytes::from_static(b"data: a\r\r")), Ok(None));
    let block = cutter.push(Bytes::from_static(b"data: b")).ok().flatten();
    assert_eq!(block.as_deref(), Some(&b"data: a\r\r"[..]));
    assert!(cutter.rest().is_none(), "a line cut short is dropped");
    // The body's end says it too.
    let mut cutter = EventCutter::default();
    assert_eq!(cutter.push(Bytes::from_static(b"data: a\r\r")), Ok(None));
    assert_eq!(cutter.rest().as_deref(), Some(&b"data: a\r\r"[..]));
}

#[test]
fn what_is_left_at_the_end_goes_on_as_whole_lines_only() {
    let rest = |bytes: &'static [u8]| {
        let mut cutter = EventCutter::default();
        let _ = cutter.push(Bytes::from_static(bytes));
        cutter.rest()
    };
    assert_eq!(rest(b"data: [DONE]\n").as_deref(), Some(&b"data: [DONE]\n\n"[..]));
    assert_eq!(rest(b"data: [DONE]\r\n").as_deref(), Some(&b"data: [DONE]\r\n\n"[..]));
    assert_eq!(rest(b"data: [DONE]\r").as_deref(), Some(&b"data: [DONE]\r\r"[..]));
    let cut = rest(b"data: {\"a\":1}\ndata: {\"choices\":[{\"del");
    assert_eq!(cut.as_deref(), Some(&b"data: {\"a\":1}\n\n"[..]));
    assert!(rest(b"data: {\"cho").is_none());
    assert!(rest(b"").is_none());
}

#[test]
fn the_held_tail_is_capped() {
    let mut cutter = EventCutter::with_limit(32);
    // Whole events pass whatever their number; only the unfinished tail counts.
    let events = Bytes::from("data: 0123456789\n\n".repeat(10));
    assert_eq!(cutter.push(events.clone()), Ok(Some(events)));
    assert_eq!(cutter.push(Bytes::from_static(b"data: 0123456789012345")), Ok(None));
    assert_eq!(
        cutter
            .push(Bytes::from_static(b"6789\n\n"))
            .ok()
            .flatten()
            .map(|b| b.len()),
        Some(28)
    );
    // A tail past the cap fails, in one read or several; what was held is dropped.
    assert_eq!(cutter.push(Bytes::from_static(b"data: 01234567890123456789")), Ok(None));
    assert_eq!(
        cutter.push(Bytes::from_static(b"0123456789")),
        Err(EventTooLong { limit: 32 })
    );
    assert!(cutter.rest().is_none());
    let mut cutter = EventCutter::with_limit(32);
    let long = Bytes::from(format!("data: {}\n\ndata: {}", "x", "y".repeat(40)));
    assert_eq!(cutter.push(long), Err(EventTooLong { limit: 32 }));
    // Lines that never make a blank one count too.
    let mut cutter = EventCutter::with_limit(32);
    let lines = Bytes::from("data: 0123456789\n".repeat(2));
    assert_eq!(cutter.push(lines.clone()), Err(EventTooLong { limit: 32 }));
    assert_eq!(MAX_EVENT_BYTES, EventCutter::default().limit);
}

#[test]
fn fields_are_read_as_the_spec_says() {
    let block = concat!(
        ": a comment\n",
        "event:first\n",
        "event: message_start\n",
        "id: 1\n",
        "retry: 10\n",
        "data:{\"a\":1}\n",
        "data:  two spaces\n",
        "data\n",
        "unknown: field\n",
        "\n",
        ": comment only\n\n",
        "event: named_only\n\n",
        "data: [DONE]\r\n\r\n",
    );
    assert_eq!(
        read(block.as_bytes()),
        vec![
            ("message_start".to_string(), "{\"a\":1}\n two spaces\n".to_string()),
            ("named_only".to_string(), String::new()),
            (String::new(), "[DONE]".to_string()),
        ]
    );
    let one_line = events(b"data: x\n\n")
        .next()
        .map(|e| matches!(e.data, Cow::Borrowed(_)));
    assert_eq!(one_line, Some(true), "one data line is not copied");
    let kept = without(Bytes::copy_from_slice(block.as_bytes()), |e| e.name == b"message_start");
    assert_eq!(
        &kept[..],
        b": comment only\n\nevent: named_only\n\ndata: [DONE]\r\n\r\n"
    );
    let untouched = Bytes::copy_from_slice(block.as_bytes());
    assert_eq!(without(untouched.clone(), |_| false).as_ptr(), untouched.as_ptr());
}
