//! Limit and shape checks, applied by `Kv` before anything reaches a backend.

use crate::backend::{AtomicWrite, MutationKind, ReadRange};
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::value::Value;

pub(crate) fn read_ranges(limits: &Limits, ranges: &[ReadRange]) -> Result<()> {
    if ranges.len() > limits.max_read_ranges {
        return Err(Error::TooManyRanges { max: limits.max_read_ranges });
    }
    let mut entries: usize = 0;
    for r in ranges {
        read_key(limits, &r.start)?;
        // An end is exclusive: a point read of a maximal key ends at `key ‖ 0x00`, one byte
        // longer, as in Deno.
        if r.end.len() > limits.max_read_key_size + 1 {
            return Err(Error::KeyTooLargeForRead {
                max: limits.max_read_key_size,
                size: r.end.len() - 1,
            });
        }
        if r.limit == 0 {
            return Err(Error::InvalidOption("a read range's limit must be at least 1".into()));
        }
        entries = entries.saturating_add(r.limit as usize);
    }
    if entries > limits.max_read_entries {
        return Err(Error::TooManyEntries { max: limits.max_read_entries });
    }
    Ok(())
}

/// The keys of a watch: at least one, at most `max_watched_keys`, each a valid read key.
pub(crate) fn watch_keys(limits: &Limits, keys: &[Vec<u8>]) -> Result<()> {
    if keys.is_empty() {
        return Err(Error::InvalidOption("watch needs at least one key".into()));
    }
    if keys.len() > limits.max_watched_keys {
        return Err(Error::TooManyWatchedKeys { max: limits.max_watched_keys });
    }
    keys.iter().try_for_each(|k| read_key(limits, k))
}

pub(crate) fn read_key(limits: &Limits, key: &[u8]) -> Result<()> {
    if key.len() > limits.max_read_key_size {
        return Err(Error::KeyTooLargeForRead { max: limits.max_read_key_size, size: key.len() });
    }
    Ok(())
}

fn write_key(limits: &Limits, key: &[u8]) -> Result<usize> {
    if key.is_empty() {
        return Err(Error::InvalidKey("key cannot be empty".into()));
    }
    if key.len() > limits.max_write_key_size {
        return Err(Error::KeyTooLargeForWrite { max: limits.max_write_key_size, size: key.len() });
    }
    Ok(key.len())
}

fn value_size(limits: &Limits, size: usize) -> Result<usize> {
    if size > limits.max_value_size {
        return Err(Error::ValueTooLarge { max: limits.max_value_size, size });
    }
    Ok(size)
}

/// Checks an atomic write against the limits; `now_ms` bounds enqueue delays.
pub(crate) fn atomic_write(limits: &Limits, write: &AtomicWrite, now_ms: i64) -> Result<()> {
    if write.checks.len() > limits.max_checks {
        return Err(Error::TooManyChecks { max: limits.max_checks });
    }
    if write.mutations.len() + write.enqueues.len() > limits.max_mutations {
        return Err(Error::TooManyMutations { max: limits.max_mutations });
    }
    let mut total: usize = 0;
    let mut total_keys: usize = 0;
    for c in &write.checks {
        if c.key.is_empty() {
            return Err(Error::InvalidKey("key cannot be empty".into()));
        }
        read_key(limits, &c.key)?;
        total += c.key.len();
    }
    for m in &write.mutations {
        let k = write_key(limits, &m.key)?;
        total += k;
        total_keys += k;
        if let Some(v) = m.kind.value() {
            total += value_size(limits, v.encoded_len())?;
        }
        if let MutationKind::SumWithLimits { min, max, .. } = &m.kind {
            total += min.iter().chain(max).map(Value::encoded_len).sum::<usize>();
        }
        if let Some(at) = m.expire_at_ms {
            if at < 0 {
                return Err(Error::InvalidOption(format!("invalid expiry time {at} ms")));
            }
            if !m.kind.may_expire() {
                return Err(Error::InvalidOption("only set mutations can expire".into()));
            }
        }
    }
    for e in &write.enqueues {
        total += value_size(limits, e.payload.len())?;
        let delay = e.deadline_ms.saturating_sub(now_ms);
        if delay > 0 && delay as u64 > limits.max_queue_delay_ms {
            return Err(Error::InvalidEnqueue("Delay cannot be greater than 30 days".into()));
        }
        if let Some(schedule) = &e.backoff_schedule {
            if schedule.len() > limits.max_backoff_intervals {
                return Err(Error::InvalidEnqueue(format!(
                    "Invalid backoffSchedule, max {} intervals allowed",
                    limits.max_backoff_intervals
                )));
            }
            if let Some(i) = schedule.iter().position(|&ms| ms > limits.max_backoff_interval_ms) {
                return Err(Error::InvalidEnqueue(format!(
                    "Invalid backoffSchedule, interval at index {i} is invalid"
                )));
            }
            total += 4 * schedule.len();
        }
        if e.keys_if_undelivered.len() > limits.max_keys_if_undelivered {
            return Err(Error::InvalidEnqueue(format!(
                "Too many keysIfUndelivered (max {})",
                limits.max_keys_if_undelivered
            )));
        }
        for k in &e.keys_if_undelivered {
            total += write_key(limits, k)?;
        }
    }
    if total > limits.max_total_mutation_size {
        return Err(Error::TotalMutationSizeTooLarge { max: limits.max_total_mutation_size });
    }
    if total_keys > limits.max_total_key_size {
        return Err(Error::TotalKeySizeTooLarge { max: limits.max_total_key_size });
    }
    Ok(())
}
