//! `exai chat`: a one-off call. Text streams to stdout as it arrives; reasoning (with
//! `--show-reasoning`) and the continuation id go to stderr, so stdout pipes cleanly. A spinner
//! shows on stderr while waiting, only when stderr is a terminal. Ctrl-C drops the stream — which
//! cancels the upstream request — and exits 130. `--continue` without an id continues the last
//! conversation of the state directory (or Redis) this process uses.

use std::io::{IsTerminal, Read, Write};
use std::time::Duration;

use exai_core::{ChatEvent, ChatRequest, ChatResponse, Gateway};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::ChatArgs;
use crate::exit::Failure;

fn prompt(arg: Option<String>) -> Result<String, Failure> {
    match arg.filter(|p| p != "-") {
        Some(p) => Ok(p),
        None if std::io::stdin().is_terminal() => Err(Failure::new(
            2,
            "no prompt: pass one as an argument, or pipe text to stdin",
        )),
        None => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            if text.trim().is_empty() {
                return Err(Failure::new(2, "stdin was empty: nothing to send"));
            }
            Ok(text)
        }
    }
}

fn spinner() -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    // A spinner and its message, not the default bar (which has no length to fill here). What
    // the gateway reports (queued, calling a provider, falling back) follows the message.
    let style = ProgressStyle::with_template("{spinner} waiting for the model{msg} ({elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(style);
    bar.tick();
    bar.enable_steady_tick(Duration::from_millis(100));
    Some(bar)
}

/// The conversation `--continue` names: its id, or without one the most recently updated
/// conversation this process can see (the memory store's listing, newest first).
async fn continuation(gateway: &Gateway, flag: Option<Option<String>>) -> Result<Option<String>, Failure> {
    let Some(id) = flag else { return Ok(None) };
    if let Some(id) = id {
        return Ok(Some(id));
    }
    if let Some(last) = gateway.threads(1).await?.into_iter().next() {
        return Ok(Some(last.id));
    }
    let memory = match gateway.memory_status().await.backend {
        "sqlite" => gateway.config().memory.sqlite_path.display().to_string(),
        other => format!("{other} memory"),
    };
    Err(Failure::new(
        7,
        format!("no conversation to continue yet in {memory}: start one with exai chat \"…\""),
    ))
}

/// `exai chat --continue "and then?"` reads the prompt as an id (the flag's value comes first).
/// An id never holds whitespace, so that one is refused with the order that works.
fn prompt_taken_as_id(prompt: Option<&String>, flag: Option<&Option<String>>) -> Result<(), Failure> {
    match (prompt, flag) {
        (None, Some(Some(id))) if id.contains(char::is_whitespace) => Err(Failure::new(
            2,
            format!(
                "'{id}' is not a conversation id; to continue the last conversation, put the prompt \
                 first: exai chat \"{id}\" --continue"
            ),
        )),
        _ => Ok(()),
    }
}

async fn request(gateway: &Gateway, args: ChatArgs) -> Result<ChatRequest, Failure> {
    prompt_taken_as_id(args.prompt.as_ref(), args.continuation.as_ref())?;
    let continuation = continuation(gateway, args.continuation).await?;
    let mut paths = Vec::new();
    for f in &args.files {
        let absolute =
            std::fs::canonicalize(f).map_err(|e| Failure::new(7, format!("cannot read {}: {e}", f.display())))?;
        paths.push(absolute.display().to_string());
    }
    let budget = gateway.config().tools.file_token_budget;
    let attached = exai_core::attach_files(paths, budget)
        .await
        .map_err(|e| Failure::new(7, e.to_string()))?;
    for omitted in &attached.omitted {
        eprintln!("exai: left out {omitted}");
    }
    let mut request = ChatRequest::new(prompt(args.prompt)?)
        .model_opt(args.model)
        .web_search(args.web_search)
        .attach(attached)
        .origin("cli");
    if let Some(system) = args.system {
        request = request.system(system);
    }
    if let Some(id) = continuation {
        request = request.continuation(id);
    }
    if let Some(t) = args.temperature {
        request = request.temperature(t);
    }
    if let Some(mode) = args.thinking {
        request = request.thinking(mode);
    }
    Ok(request)
}

fn footer(r: &ChatResponse) {
    eprintln!(
        "[{} via {} · {} tokens in, {} out · ${:.6} · continue with: exai chat --continue {}]",
        r.model, r.provider, r.usage.input_tokens, r.usage.output_tokens, r.cost_usd, r.continuation_id
    );
}

pub async fn run(gateway: &Gateway, args: ChatArgs) -> Result<i32, Failure> {
    let (json, no_stream, show_reasoning) = (args.json, args.no_stream, args.show_reasoning);
    let request = request(gateway, args).await?;
    let session = gateway.session("cli");
    let spin = spinner();
    let interrupted = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    if json || no_stream {
        let reply = tokio::select! {
            r = session.chat(request) => r,
            () = interrupted => return Err(Failure::new(130, "interrupted")),
        };
        if let Some(s) = &spin {
            s.finish_and_clear();
        }
        let reply = reply?;
        if json {
            println!("{}", serde_json::to_string_pretty(&reply)?);
        } else {
            if show_reasoning && let Some(r) = &reply.reasoning {
                eprintln!("{r}");
            }
            println!("{}", reply.text);
            footer(&reply);
        }
        return Ok(0);
    }
    let mut stream = session.chat_stream(request).await?;
    let mut stdout = std::io::stdout();
    tokio::pin!(interrupted);
    let mut spin = spin;
    loop {
        let event = tokio::select! {
            e = stream.next() => e,
            () = &mut interrupted => {
                drop(stream);
                if let Some(s) = spin.take() {
                    s.finish_and_clear();
                }
                return Err(Failure::new(130, "interrupted; the request was cancelled"));
            }
        };
        let Some(event) = event else {
            return Err(Failure::new(1, "the stream ended without a reply"));
        };
        match event? {
            ChatEvent::Status(s) => {
                if let Some(bar) = &spin {
                    bar.set_message(format!(" · {s}"));
                }
            }
            ChatEvent::Reasoning(r) if show_reasoning => {
                if let Some(s) = spin.take() {
                    s.finish_and_clear();
                }
                eprint!("{r}");
            }
            ChatEvent::Text(t) => {
                if let Some(s) = spin.take() {
                    s.finish_and_clear();
                }
                stdout.write_all(t.as_bytes())?;
                stdout.flush()?;
            }
            ChatEvent::Done(reply) => {
                if let Some(s) = spin.take() {
                    s.finish_and_clear();
                }
                println!();
                footer(&reply);
                return Ok(0);
            }
            // Reasoning nobody asked to see, and events later versions add.
            _ => {}
        }
    }
}
