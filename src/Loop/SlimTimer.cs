namespace IoMux.Loop;

/// <summary>
/// A handle to a slim timer (<see cref="EventLoop.AddSlimTimer"/>): a plain record in the loop's timer table
/// (52 bytes with its heap entry, no object of its own), as sd-event's prioq entries or libev's heap of
/// timer records. It has every timer feature of <see cref="TimerSource"/> (three clocks, accuracy windows that
/// coalesce, repeating without drift, a priority among the other sources, <see cref="SetDeadline"/> and
/// <see cref="SetDelay"/>, disposal from any callback) but not those of a source object: no description, no
/// rate limit, no <see cref="SourceState"/>; use <see cref="TimerSource"/> for those.
/// </summary>
/// <remarks>
/// Lifetime: a repeating timer lives until disposed. A oneshot lives until its callback returns: its record is
/// then freed, unless the callback re-armed it with <see cref="SetDelay"/> or <see cref="SetDeadline"/>. Each
/// record carries a generation, bumped when it is freed, so a handle kept past that is stale: it is not
/// <see cref="IsActive"/>, <see cref="Dispose"/> does nothing, and the other members throw
/// <see cref="ObjectDisposedException"/>, even once the record serves another timer. Use the handle on the loop
/// thread only.
/// </remarks>
public readonly struct SlimTimer : IDisposable, IEquatable<SlimTimer>
{
    private readonly EventLoop? _loop;
    private readonly int _slot, _generation;

    internal SlimTimer(EventLoop loop, int slot, int generation)
    {
        _loop = loop;
        _slot = slot;
        _generation = generation;
    }

    /// <summary>The loop the timer belongs to; null for a default handle.</summary>
    public EventLoop? Loop => _loop;

    /// <summary>True while the timer will still run: armed, or due in this iteration, or re-armed by its own
    /// callback. False once a oneshot has run (inside its callback too, unless re-armed), after
    /// <see cref="Dispose"/>, and for a default handle.</summary>
    public bool IsActive => _loop is not null && _loop.TimerTable.IsLive(_slot, _generation)
        && _loop.TimerTable[_slot].Phase is TimerPhase.Armed or TimerPhase.Due;

    /// <summary>The clock.</summary>
    /// <exception cref="ObjectDisposedException">The handle is stale.</exception>
    public LoopClock Clock => (LoopClock)Record.Clock;

    /// <summary>When the timer is due, a time on its clock (see <see cref="EventLoop.Now"/>); inside a repeating
    /// timer's callback, already the next deadline.</summary>
    /// <exception cref="ObjectDisposedException">The handle is stale.</exception>
    public TimeSpan Deadline => TimerSpan.ToTimeSpan(Record.Deadline);

    /// <summary>How late it may run.</summary>
    /// <exception cref="ObjectDisposedException">The handle is stale.</exception>
    public TimeSpan Accuracy
    {
        get
        {
            ref var record = ref Record;
            return TimeSpan.FromTicks((record.Latest - record.Deadline) / 100);
        }
    }

    /// <summary>The period of a repeating timer; zero for a oneshot.</summary>
    /// <exception cref="ObjectDisposedException">The handle is stale.</exception>
    public TimeSpan Period => TimeSpan.FromTicks(Record.Period / 100);

    /// <summary>Moves the deadline (absolute, on the timer's clock); keeps the accuracy unless one is given. Arms
    /// the timer again if it was due or running its callback (a oneshot so re-armed is not freed).</summary>
    /// <exception cref="ObjectDisposedException">The handle is stale.</exception>
    public void SetDeadline(TimeSpan deadline, TimeSpan? accuracy = null) => SetDeadlineNanoseconds(TimerSpan.Nanoseconds(deadline), accuracy);

    private void SetDeadlineNanoseconds(long deadlineNanoseconds, TimeSpan? accuracy)
    {
        var table = Table;
        ref var record = ref table[_slot];
        long accuracyNanoseconds = accuracy is { } a ? TimerSpan.Nanoseconds(a) : record.Latest - record.Deadline;
        deadlineNanoseconds = TimerSpan.Deadline(deadlineNanoseconds);
        table.Disarm(_slot);
        record.Deadline = deadlineNanoseconds;
        record.Latest = deadlineNanoseconds + accuracyNanoseconds;
        table.Arm(_slot);
    }

    /// <summary>Due <paramref name="delay"/> from the loop's cached now (see <see cref="SetDeadline"/>).</summary>
    /// <exception cref="ObjectDisposedException">The handle is stale.</exception>
    public void SetDelay(TimeSpan delay) => SetDeadlineNanoseconds(TimerSpan.After(_loop!.NowNanoseconds(Clock), delay), null);

    /// <summary>Cancels the timer and frees its record. Idempotent, a stale or default handle does nothing; safe
    /// inside any callback, its own included.</summary>
    public void Dispose() => _loop?.TimerTable.Free(_slot, _generation);

    private TimerTable Table
    {
        get
        {
            if (_loop is null || !_loop.TimerTable.IsLive(_slot, _generation))
                throw new ObjectDisposedException(nameof(SlimTimer), "The timer ran (oneshot) or was disposed.");
            return _loop.TimerTable;
        }
    }

    private ref TimerRecord Record => ref Table[_slot];

    /// <inheritdoc />
    public bool Equals(SlimTimer other) => _loop == other._loop && _slot == other._slot && _generation == other._generation;

    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is SlimTimer other && Equals(other);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(_loop, _slot, _generation);

    /// <summary>Same timer, same generation.</summary>
    public static bool operator ==(SlimTimer left, SlimTimer right) => left.Equals(right);

    /// <summary>Not the same timer, or not the same generation.</summary>
    public static bool operator !=(SlimTimer left, SlimTimer right) => !left.Equals(right);

    /// <inheritdoc />
    public override string ToString() => IsActive ? $"SlimTimer({Clock}, deadline {Deadline})" : "SlimTimer(inactive)";
}
