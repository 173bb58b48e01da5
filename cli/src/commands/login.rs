//! `grove login`, `grove logout`.

use std::io::{BufRead, IsTerminal};

use reqwest::Method;
use serde_json::{json, Value};

use crate::args::LoginArgs;
use crate::client::http_error;
use crate::config::Session;
use crate::{CliError, Ctx};

pub async fn login(ctx: &mut Ctx<'_>, args: LoginArgs) -> Result<(), CliError> {
    let password = match args.password {
        Some(p) => p,
        None if args.password_stdin => read_line_stdin()?,
        None if std::io::stdin().is_terminal() => prompt_password(&format!("Password for {}: ", args.username))?,
        None => return Err(CliError::Usage("no password: pass --password, set GROVE_PASSWORD, or use --password-stdin".into())),
    };
    let body = json!({ "username": args.username, "password": password, "organization_name": args.organization });
    let path = "/api/auth/login";
    // A login changes nothing on the server: safe to send to the next endpoint.
    let answer = ctx.client.send(Method::POST, path, Some(body.to_string().into_bytes()), None, true).await?;
    if !answer.is_success() {
        return Err(http_error(&Method::POST, path, &answer));
    }
    let v = answer.json(&Method::POST, path)?;
    let field = |k: &str| -> Result<String, CliError> {
        v.get(k).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| CliError::BadResponse {
            method: "POST".into(),
            path: path.into(),
            endpoint: answer.endpoint.clone(),
            detail: format!("no {k:?} in the answer"),
        })
    };
    let session = Session { username: args.username.clone(), organization: args.organization.clone(), token: field("token")?, refresh_token: field("refresh_token")? };
    let saved = session.clone();
    ctx.store.update(move |c| c.session = Some(saved))?;
    ctx.client.set_session(Some(session));
    let line = format!(
        "Logged in as {} (organization {}) at {}; session saved in {}",
        args.username,
        args.organization,
        answer.endpoint,
        ctx.store.path.display()
    );
    ctx.println(&line);
    Ok(())
}

pub fn logout(ctx: &mut Ctx<'_>) -> Result<(), CliError> {
    let had = ctx.store.load()?.session.is_some();
    ctx.store.update(|c| c.session = None)?;
    ctx.println(if had { "Logged out: the stored session was removed" } else { "No stored session" });
    Ok(())
}

fn read_line_stdin() -> Result<String, CliError> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| CliError::Usage(format!("cannot read the password from standard input: {e}")))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Read a line from the terminal with echo off.
fn prompt_password(prompt: &str) -> Result<String, CliError> {
    use std::io::Write;
    let mut stderr = std::io::stderr();
    let _ = write!(stderr, "{prompt}");
    let _ = stderr.flush();
    let fd = libc::STDIN_FILENO;
    // SAFETY: tcgetattr/tcsetattr on stdin with a zeroed termios that tcgetattr fills in.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    let have_tty = unsafe { libc::tcgetattr(fd, &mut saved) } == 0;
    if have_tty {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        quiet.c_lflag |= libc::ECHONL;
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    let line = read_line_stdin();
    if have_tty {
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    }
    line
}
