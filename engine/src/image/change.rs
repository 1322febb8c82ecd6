//! `--change` instructions (`docker import -c`, `docker commit -c`): the Dockerfile instructions that only
//! touch the image config — CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME,
//! WORKDIR.

use super::{Empty, HealthConfig, RunConfig};

/// An instruction docker would refuse in `--change`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid --change `{0}`: expected `INSTRUCTION arguments`, e.g. `CMD [\"sh\"]` or `ENV A=1`")]
    Syntax(String),
    #[error("{0} is not a valid change command (use CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME or WORKDIR)")]
    Unsupported(String),
    #[error("invalid --change `{change}`: {message}")]
    Invalid { change: String, message: String },
}

/// Applies one `--change` line to `config`.
pub fn apply(config: &mut RunConfig, change: &str) -> Result<(), Error> {
    let change = change.trim();
    let (instruction, args) = change.split_once(char::is_whitespace).ok_or_else(|| Error::Syntax(change.to_owned()))?;
    let args = args.trim();
    match instruction.to_ascii_uppercase().as_str() {
        "CMD" => config.cmd = Some(command_form(args)),
        "ENTRYPOINT" => config.entrypoint = Some(command_form(args)),
        "ENV" => {
            for (k, v) in key_values(args, change)? {
                config.env.retain(|e| e.split_once('=').map_or(e.as_str(), |(ek, _)| ek) != k);
                config.env.push(format!("{k}={v}"));
            }
        }
        "LABEL" => {
            for (k, v) in key_values(args, change)? {
                config.labels.insert(k, v);
            }
        }
        "EXPOSE" => {
            for port in args.split_whitespace() {
                let port = if port.contains('/') { port.to_owned() } else { format!("{port}/tcp") };
                config.exposed_ports.insert(port, Empty {});
            }
        }
        "VOLUME" => {
            let paths = serde_json::from_str::<Vec<String>>(args)
                .unwrap_or_else(|_| args.split_whitespace().map(str::to_owned).collect());
            for p in paths {
                config.volumes.insert(p, Empty {});
            }
        }
        "USER" => config.user = args.to_owned(),
        "WORKDIR" => config.working_dir = args.to_owned(),
        "STOPSIGNAL" => config.stop_signal = Some(args.to_owned()),
        "ONBUILD" => config.on_build.push(args.to_owned()),
        "HEALTHCHECK" => config.healthcheck = Some(healthcheck(change)?),
        other => return Err(Error::Unsupported(other.to_owned())),
    }
    Ok(())
}

/// `HEALTHCHECK [--interval=…] [--timeout=…] [--start-period=…] [--start-interval=…] [--retries=N] CMD …` or
/// `HEALTHCHECK NONE`, read by the Dockerfile parser; durations stored in nanoseconds as docker does.
fn healthcheck(change: &str) -> Result<HealthConfig, Error> {
    use crate::build::instruction::{parse_line, Command, Healthcheck};
    let nanos = |d: std::time::Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    match parse_line(change, &[], '\\') {
        Ok(Command::Healthcheck(Healthcheck::None)) => {
            Ok(HealthConfig { test: vec!["NONE".to_owned()], ..HealthConfig::default() })
        }
        Ok(Command::Healthcheck(Healthcheck::Check {
            test,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        })) => Ok(HealthConfig {
            test,
            interval: nanos(interval),
            timeout: nanos(timeout),
            start_period: nanos(start_period),
            start_interval: nanos(start_interval),
            retries: i64::from(retries),
        }),
        Ok(_) => Err(Error::Syntax(change.to_owned())),
        Err(message) => Err(Error::Invalid { change: change.to_owned(), message }),
    }
}

/// JSON array (exec form) or a string run by `/bin/sh -c` (shell form).
fn command_form(args: &str) -> Vec<String> {
    match serde_json::from_str::<Vec<String>>(args) {
        Ok(v) => v,
        Err(_) => vec!["/bin/sh".to_owned(), "-c".to_owned(), args.to_owned()],
    }
}

/// `K=V K2="v 2"` or the legacy `K V` form.
fn key_values(args: &str, change: &str) -> Result<Vec<(String, String)>, Error> {
    if !args.contains('=') {
        let (k, v) = args.split_once(char::is_whitespace).ok_or_else(|| Error::Syntax(change.to_owned()))?;
        return Ok(vec![(k.to_owned(), v.trim().to_owned())]);
    }
    let mut out = Vec::new();
    let mut chars = args.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (_, '\\') => {
                    if let Some(n) = chars.next() {
                        word.push(n);
                    }
                }
                (None, c) if c.is_whitespace() => break,
                (_, c) => word.push(c),
            }
        }
        let (k, v) = word.split_once('=').ok_or_else(|| Error::Syntax(change.to_owned()))?;
        out.push((k.to_owned(), v.to_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_changes() -> Result<(), Error> {
        let mut c = RunConfig::default();
        apply(&mut c, r#"CMD ["sh", "-c", "echo hi"]"#)?;
        apply(&mut c, "ENTRYPOINT /start")?;
        apply(&mut c, r#"ENV A=1 B="two words""#)?;
        apply(&mut c, "ENV A 3")?;
        apply(&mut c, "EXPOSE 80 53/udp")?;
        apply(&mut c, "WORKDIR /app")?;
        assert_eq!(c.cmd, Some(vec!["sh".into(), "-c".into(), "echo hi".into()]));
        assert_eq!(c.entrypoint, Some(vec!["/bin/sh".into(), "-c".into(), "/start".into()]));
        assert_eq!(c.env, vec!["B=two words".to_owned(), "A=3".to_owned()]);
        assert!(c.exposed_ports.contains_key("80/tcp") && c.exposed_ports.contains_key("53/udp"));
        assert_eq!(c.working_dir, "/app");
        assert!(matches!(apply(&mut c, "RUN echo"), Err(Error::Unsupported(_))));
        apply(&mut c, "HEALTHCHECK --interval=200ms --retries=2 CMD test -f /ok")?;
        let hc = c.healthcheck.clone().unwrap_or_default();
        assert_eq!(
            (hc.test, hc.interval, hc.retries),
            (vec!["CMD-SHELL".into(), "test -f /ok".into()], 200_000_000, 2)
        );
        apply(&mut c, "HEALTHCHECK NONE")?;
        assert_eq!(c.healthcheck.clone().map(|h| h.test), Some(vec!["NONE".to_owned()]));
        assert!(matches!(apply(&mut c, "HEALTHCHECK --interval=soon CMD true"), Err(Error::Invalid { .. })));
        Ok(())
    }
}
