//! `runnelctl group ...`: consumer groups, their members, committed offsets and lag.

use anyhow::{Result, bail};
use clap::Subcommand;
use runnel_rpc::admin::admin_client::AdminClient;
use runnel_rpc::admin::reset_offsets_request::To;
use runnel_rpc::admin::{Empty, GroupName, GroupReply, ResetOffsetsRequest};
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::{Output, table};

#[derive(Subcommand)]
pub enum GroupCmd {
    /// Every consumer group: state, protocol type, member count.
    List,
    /// A group's state, protocol, members (client id, host, assignment) and,
    /// per partition, committed offset, log end offset and lag.
    Describe { group: String },
    /// Move a group's committed offsets; refused while the group has members.
    /// Prints each partition's offset before and after.
    #[command(group(clap::ArgGroup::new("scope").required(true).args(["topic", "all_topics"])))]
    ResetOffsets {
        group: String,
        #[arg(long)]
        topic: Option<String>,
        /// Every partition the group has committed offsets for.
        #[arg(long, conflicts_with = "partitions")]
        all_topics: bool,
        /// Only these partitions (repeatable); every partition when omitted.
        #[arg(long = "partition")]
        partitions: Vec<i32>,
        /// To each partition's log start offset.
        #[arg(long, group = "to")]
        to_earliest: bool,
        /// To each partition's end (its high watermark).
        #[arg(long, group = "to")]
        to_latest: bool,
        /// To the first record at or after a time: RFC 3339 (2026-11-22T05:00:00Z,
        /// or without a zone for UTC) or milliseconds since the epoch.
        #[arg(long, group = "to")]
        to_datetime: Option<String>,
        /// To this offset (clamped to the log start and end).
        #[arg(long, group = "to")]
        to_offset: Option<i64>,
        /// Move each committed offset by N (negative: back, to read again),
        /// clamped to the log start and end.
        #[arg(long, group = "to", allow_negative_numbers = true)]
        shift_by: Option<i64>,
        /// Show the new offsets without committing them.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete a group and its committed offsets; refused while it has members.
    Delete { group: String },
}

/// Milliseconds since the epoch from RFC 3339 or a number.
pub(crate) fn parse_datetime(s: &str) -> Result<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let t = humantime::parse_rfc3339(s).or_else(|_| humantime::parse_rfc3339_weak(s));
    match t {
        Ok(t) => Ok(t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)),
        Err(e) => bail!("{s:?} is not a time: {e} (use 2026-11-22T05:00:00Z or milliseconds since the epoch)"),
    }
}

fn group_json(g: &GroupReply) -> Value {
    json!({
        "group": g.group,
        "state": g.state,
        "protocol_type": g.protocol_type,
        "protocol": g.protocol,
        "generation": g.generation,
        "members": g.members.iter().map(|m| json!({
            "member_id": m.member_id,
            "instance_id": if m.instance_id.is_empty() { Value::Null } else { json!(m.instance_id) },
            "client_id": m.client_id,
            "client_host": m.client_host,
            "assignment": m.assignment.iter().map(|a| json!({"topic": a.topic, "partition": a.partition})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "offsets": g.offsets.iter().map(|o| json!({
            "topic": o.topic,
            "partition": o.partition,
            "committed": if o.committed < 0 { Value::Null } else { json!(o.committed) },
            "log_end": if o.log_end < 0 { Value::Null } else { json!(o.log_end) },
            "lag": if o.lag < 0 { Value::Null } else { json!(o.lag) },
            "member_id": if o.member_id.is_empty() { Value::Null } else { json!(o.member_id) },
        })).collect::<Vec<_>>(),
    })
}

fn dash(v: i64) -> String {
    if v < 0 { "-".into() } else { v.to_string() }
}

fn print_group(g: &GroupReply, output: Output) {
    if output == Output::Json {
        outln!("{}", group_json(g));
        return;
    }
    outln!(
        "group {}  state {}  protocol {}  generation {}  members {}",
        g.group,
        g.state,
        if g.protocol.is_empty() { "-" } else { &g.protocol },
        g.generation,
        g.members.len()
    );
    if !g.members.is_empty() {
        let rows = g
            .members
            .iter()
            .map(|m| {
                let assigned = m.assignment.iter().map(|a| format!("{}-{}", a.topic, a.partition)).collect::<Vec<_>>().join(",");
                vec![m.member_id.clone(), m.client_id.clone(), m.client_host.clone(), if assigned.is_empty() { "-".into() } else { assigned }]
            })
            .collect();
        table(&["MEMBER", "CLIENT-ID", "HOST", "ASSIGNMENT"], rows);
        outln!("");
    }
    let rows = g
        .offsets
        .iter()
        .map(|o| {
            vec![
                o.topic.clone(),
                o.partition.to_string(),
                dash(o.committed),
                dash(o.log_end),
                dash(o.lag),
                if o.member_id.is_empty() { "-".into() } else { o.member_id.clone() },
            ]
        })
        .collect();
    table(&["TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG", "MEMBER"], rows);
}

/// A reset's result: each partition's offset before and after.
fn print_reset(g: &GroupReply, dry_run: bool, output: Output) {
    if output == Output::Json {
        let mut v = group_json(g);
        for (o, j) in g.offsets.iter().zip(v["offsets"].as_array_mut().into_iter().flatten()) {
            j["previous"] = if o.previous < 0 { Value::Null } else { json!(o.previous) };
        }
        v["dry_run"] = json!(dry_run);
        outln!("{v}");
        return;
    }
    if dry_run {
        outln!("dry run: group {} would move as below; nothing was committed", g.group);
    } else {
        outln!("group {}: offsets committed", g.group);
    }
    let rows =
        g.offsets.iter().map(|o| vec![o.topic.clone(), o.partition.to_string(), dash(o.previous), dash(o.committed), dash(o.log_end), dash(o.lag)]).collect();
    table(&["TOPIC", "PARTITION", "BEFORE", "AFTER", "LOG-END", "LAG"], rows);
}

pub async fn run(client: &mut AdminClient<Channel>, command: GroupCmd, output: Output, err: impl Fn(tonic::Status) -> anyhow::Error) -> Result<()> {
    match command {
        GroupCmd::List => {
            let groups = client.list_groups(Empty {}).await.map_err(&err)?.into_inner().groups;
            if output == Output::Json {
                let v: Vec<Value> =
                    groups.iter().map(|g| json!({"group": g.group, "state": g.state, "protocol_type": g.protocol_type, "members": g.members})).collect();
                outln!("{}", Value::Array(v));
            } else {
                table(
                    &["GROUP", "STATE", "PROTOCOL-TYPE", "MEMBERS"],
                    groups.iter().map(|g| vec![g.group.clone(), g.state.clone(), g.protocol_type.clone(), g.members.to_string()]).collect(),
                );
            }
        }
        GroupCmd::Describe { group } => {
            let g = client.describe_group(GroupName { group }).await.map_err(&err)?.into_inner();
            print_group(&g, output);
        }
        GroupCmd::ResetOffsets { group, topic, all_topics, partitions, to_earliest, to_latest, to_datetime, to_offset, shift_by, dry_run } => {
            let to = if to_earliest {
                To::Earliest(true)
            } else if to_latest {
                To::Latest(true)
            } else if let Some(t) = to_datetime {
                To::DatetimeMs(parse_datetime(&t)?)
            } else if let Some(o) = to_offset {
                To::Offset(o)
            } else if let Some(n) = shift_by {
                To::ShiftBy(n)
            } else {
                bail!("say where to: --to-earliest, --to-latest, --to-datetime, --to-offset or --shift-by");
            };
            let request = ResetOffsetsRequest { group, topic: topic.unwrap_or_default(), all_topics, partitions, to: Some(to), dry_run };
            let g = client.reset_offsets(request).await.map_err(&err)?.into_inner();
            print_reset(&g, dry_run, output);
        }
        GroupCmd::Delete { group } => {
            client.delete_group(GroupName { group: group.clone() }).await.map_err(&err)?;
            if output == Output::Json {
                outln!("{}", json!({"deleted": group}));
            } else {
                outln!("deleted group {group}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_datetime;

    #[test]
    fn datetimes_parse_as_utc_milliseconds() {
        assert_eq!(parse_datetime("1700000000000").unwrap(), 1_700_000_000_000);
        assert_eq!(parse_datetime("2023-11-14T22:13:20Z").unwrap(), 1_700_000_000_000);
        assert_eq!(parse_datetime("2023-11-14T22:13:20").unwrap(), 1_700_000_000_000);
        assert!(parse_datetime("yesterday").is_err());
    }
}
