namespace IoMux.Loop;

/// <summary>Whether a source may be dispatched (sd-event's SD_EVENT_ON / OFF / ONESHOT).</summary>
public enum SourceState
{
    /// <summary>Never dispatched until switched on.</summary>
    Off,
    /// <summary>Dispatched whenever it is pending.</summary>
    On,
    /// <summary>Dispatched once, then switched off.</summary>
    Oneshot,
}

/// <summary>
/// Something the loop dispatches: I/O readiness, a timer, a defer, a post or an exit callback. Every source
/// has a priority (lower runs first, sd-event's rule), a state, and a description for diagnostics; it can be
/// disposed from anywhere on the loop thread, including its own callback or another source's: a disposed
/// source is never dispatched again, even if it was already pending in the current iteration.
/// </summary>
public abstract class EventSource : IDisposable
{
    // Only what every source needs is a field here: a TimerSource's object is the base's fields plus its own, and every
    // armed timer pays for each of them (docs/LOOP.md, "Timers are records, not objects"). The priority and the
    // description are kept by each kind of source (PriorityValue, DescriptionValue below): fields of the other
    // sources, the side object of a TimerSource.
    private byte _state; // a SourceState: a byte packs with the flag below, where the int enum took a word of its own

    /// <summary>What few sources use (a rate limit, prepare, destroy and expire callbacks, the failure policy and
    /// failure), kept out of line and made on first use: every armed timer pays for each field of the source object,
    /// and most sources set none of these. A TimerSource's is a subclass with more of the same kind.</summary>
    private protected class Extras
    {
        public bool KeepGoingOnFailure;
        /// <summary>A TimerSource's priority (see TimerSource's side object): declared here, it takes the padding after
        /// the flag above, where the subclass's fields start on the next 8 bytes (96 bytes against 88, measured).</summary>
        public int TimerPriority;
        public Exception? Failure;
        public RateLimit? Limit;
        public Action<EventSource>? RateLimitExpire, Prepare, Destroy;
    }

    private Extras? _extras;

    /// <summary>The side object, or null while nothing in it was set.</summary>
    private protected Extras? Side => _extras;

    /// <summary>The side object, made on first use.</summary>
    private protected Extras More => _extras ??= MakeExtras();

    /// <summary>A new side object of the kind this source keeps.</summary>
    private protected virtual Extras MakeExtras() => new();

    private protected EventSource(EventLoop loop, int priority, SourceState state, string? description)
    {
        Loop = loop;
        _state = (byte)state;
        // Overridden storage, written before the derived constructor's body runs: the derived fields' initialisers
        // have run already, and neither kind of storage reads anything else.
        PriorityValue = priority;
        DescriptionValue = description;
        IdValue = loop.NextSourceId(); // before the derived body, which may register a descriptor under it
    }

    /// <summary>The loop the source belongs to.</summary>
    public EventLoop Loop { get; }

    /// <summary>Lower values are dispatched first among the pending sources of an iteration.</summary>
    public int Priority
    {
        get => PriorityValue;
        set => PriorityValue = value;
    }

    /// <summary>Where the kind of source keeps its priority.</summary>
    private protected abstract int PriorityValue { get; set; }

    /// <summary>Free text shown in diagnostics and in exceptions that escape the callback.</summary>
    public string Description
    {
        get => DescriptionValue ?? GetType().Name;
        set => DescriptionValue = value;
    }

    /// <summary>Where the kind of source keeps its description; null: the type's name.</summary>
    private protected abstract string? DescriptionValue { get; set; }

    /// <summary>The source's key in the loop's sources and, for one that registers a descriptor, its token with the
    /// poller: unique in its loop (ids count up from 1); 0 for a timer.</summary>
    internal long Id => IdValue;

    /// <summary>Where the kind of source keeps its id: a field of the other sources; a timer drops it, being in the
    /// loop's timer table rather than among its sources (its object holds only what every timer needs).</summary>
    private protected abstract long IdValue { get; set; }

    /// <summary>When the loop's iteration visits a source of this kind (EventLoop.Sources.cs); fixed for its life.</summary>
    internal abstract SourceVisit Visit { get; }

    /// <summary>For a source the loop asks each iteration (<see cref="SourceVisit.WhenSignalled"/>,
    /// <see cref="SourceVisit.EachIteration"/>) that is on and not rate limited: whether it has something to dispatch
    /// now. A defer source always has; a signal source once a signal came.</summary>
    internal virtual bool IsPending => true;

    /// <summary>For a source visited <see cref="SourceVisit.WhenReported"/>: the poller reported its descriptor ready with
    /// <paramref name="readiness"/>, and the source is pending in this iteration.</summary>
    internal virtual void Reported(Readiness readiness) { }

    /// <summary>What <see cref="EventLoop.ExitOnIdle"/> asks: could this source still wake the loop. By default while it
    /// is not off (a source held back by its rate limit counts).</summary>
    internal virtual bool CanWakeLoop => State != SourceState.Off;

    /// <summary>True once disposed.</summary>
    public bool IsDisposed { get; private set; }

    /// <summary>On, off or oneshot. Switching a source on or off takes effect from the next dispatch decision.</summary>
    public SourceState State
    {
        get => (SourceState)_state;
        set
        {
            ObjectDisposedException.ThrowIf(IsDisposed, this);
            if (_state == (byte)value)
                return;
            var previous = (SourceState)_state;
            _state = (byte)value;
            OnStateChanged(previous, value);
        }
    }

    private protected virtual void OnStateChanged(SourceState previous, SourceState current) { }

    /// <summary>What an exception from this source's callbacks (its own, its prepare or rate-limit expire callback) does.
    /// True, the default: the loop stops, runs its exit sources and throws <see cref="EventLoopException"/> naming the
    /// source (an exception in .NET is a bug, and a loop that went on would run in a state nobody planned for). False:
    /// sd-event's default, the source is switched off, the exception kept in <see cref="Failure"/>, and the loop goes on
    /// (sd_event_source_set_exit_on_failure, whose default is the other way round).</summary>
    public bool ExitOnFailure
    {
        get => _extras is not { KeepGoingOnFailure: true };
        set
        {
            if (value != ExitOnFailure)
                More.KeepGoingOnFailure = !value;
        }
    }

    /// <summary>The exception that switched the source off (<see cref="ExitOnFailure"/> false), or null.</summary>
    public Exception? Failure => _extras?.Failure;

    /// <summary>A callback threw and <see cref="ExitOnFailure"/> is false: the source goes off and the loop goes on.</summary>
    internal void DisableAfterFailure(Exception e)
    {
        More.Failure = e;
        if (IsDisposed)
            return;
        if (_state != (byte)SourceState.Off)
        {
            var previous = (SourceState)_state;
            _state = (byte)SourceState.Off;
            OnStateChanged(previous, SourceState.Off);
        }
        AfterDispatch(); // what the dispatch would have done after the callback (a reaped child disposes itself)
    }

    private protected sealed class RateLimit
    {
        public long Interval, WindowStart, LimitedUntil;
        public int Burst, Dispatches;
    }

    /// <summary>Against starvation (sd-event's ratelimit): at most <paramref name="burst"/> dispatches per
    /// <paramref name="interval"/>; past that the source is skipped (an I/O source is paused in the poller, so
    /// it cannot keep the loop awake) until the interval ends. <paramref name="burst"/> 0 removes the limit.</summary>
    public void SetRateLimit(TimeSpan interval, int burst)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(burst);
        bool wasLimited = IsRateLimited;
        if (burst == 0 && _extras is null)
            return; // nothing to remove, and nothing to allocate for it
        More.Limit = burst == 0 ? null : new RateLimit { Interval = interval.Ticks * 100, Burst = burst, WindowStart = Loop.NowNanoseconds(LoopClock.Monotonic) };
        if (wasLimited)
            OnRateLimitChanged(limited: false);
    }

    /// <summary>True while the rate limit holds the source back.</summary>
    public bool IsRateLimited => _extras?.Limit is { LimitedUntil: not 0 };

    /// <summary>When the rate limit lifts (monotonic nanoseconds), or 0.</summary>
    internal long LimitedUntil => _extras?.Limit?.LimitedUntil ?? 0;

    /// <summary>Lifts the limit once its interval is over; called by the loop each iteration. True when it lifted.</summary>
    internal bool ExpireRateLimit(long now)
    {
        if (_extras?.Limit is { LimitedUntil: not 0 } limit && now >= limit.LimitedUntil)
        {
            limit.LimitedUntil = 0;
            limit.Dispatches = 0;
            limit.WindowStart = now;
            OnRateLimitChanged(limited: false);
            return true;
        }
        return false;
    }

    /// <summary>Runs on the loop thread when the rate limit that held the source back lifts, before the source can be
    /// dispatched again (sd_event_source_set_ratelimit_expire_callback). Not run when the limit is removed or replaced
    /// by <see cref="SetRateLimit"/>. An exception from it stops the loop, as one from the source's callback does.</summary>
    public Action<EventSource>? RateLimitExpireCallback
    {
        get => _extras?.RateLimitExpire;
        set
        {
            if (value is not null || _extras is not null)
                More.RateLimitExpire = value;
        }
    }


    /// <summary>Runs before each wait of the loop while the source is on and not rate limited, in priority order with the
    /// other sources' prepare callbacks (sd_event_source_set_prepare): the place to flush buffered output or to
    /// switch the source on or off for the coming wait (sd-bus's loop integration does both). Each runs at most once per
    /// iteration. An exception from it stops the loop, as one from a callback does. Null removes it.</summary>
    /// <exception cref="ObjectDisposedException">Set on a disposed source.</exception>
    public Action<EventSource>? PrepareCallback
    {
        get => _extras?.Prepare;
        set
        {
            ObjectDisposedException.ThrowIf(IsDisposed, this);
            bool had = _extras?.Prepare is not null;
            if (value is not null || had)
                More.Prepare = value;
            if (had != value is not null)
                Loop.TrackPrepare(this, value is not null);
        }
    }

    /// <summary>Runs once when the source goes: disposed by anyone, by itself (a child source once it reported), or by
    /// the loop's own disposal (sd_event_source_set_destroy_callback, which runs when the source is freed). The
    /// place to release what the callback's closure holds. Null removes it.</summary>
    /// <exception cref="ObjectDisposedException">Set on a disposed source.</exception>
    public Action<EventSource>? DestroyCallback
    {
        get => _extras?.Destroy;
        set
        {
            ObjectDisposedException.ThrowIf(IsDisposed, this);
            bool had = _extras?.Destroy is not null;
            if (value is not null || had)
                More.Destroy = value;
            if (had != value is not null)
                Loop.TrackDestroy(this, value is not null);
        }
    }

    /// <summary>Counts a dispatch against the limit.</summary>
    internal void CountDispatch(long now)
    {
        if (_extras?.Limit is not { } limit)
            return;
        if (now - limit.WindowStart >= limit.Interval)
        {
            limit.WindowStart = now;
            limit.Dispatches = 0;
        }
        if (++limit.Dispatches >= limit.Burst)
        {
            limit.LimitedUntil = limit.WindowStart + limit.Interval;
            Loop.Track(this);
            OnRateLimitChanged(limited: true);
        }
    }

    private protected virtual void OnRateLimitChanged(bool limited) { }

    /// <summary>Runs the callback; the loop calls it with the source pending and enabled.</summary>
    internal abstract void Dispatch();

    /// <summary>What the loop does right before a dispatch: a oneshot source switches itself off, so that its
    /// callback may switch it on again (sd-event disables a oneshot source before its callback; test-event.c's
    /// TEST(basic) re-enables one from inside).</summary>
    internal virtual void BeforeDispatch()
    {
        if (_state == (byte)SourceState.Oneshot)
            State = SourceState.Off;
    }

    /// <summary>What the loop does after a dispatch (a reaped child source disposes itself).</summary>
    internal virtual void AfterDispatch() { }

    private protected virtual void OnDispose() { }

    /// <summary>Removes the source from the loop, then runs its <see cref="DestroyCallback"/>. Idempotent; safe inside
    /// any callback.</summary>
    public void Dispose()
    {
        if (IsDisposed)
            return;
        IsDisposed = true;
        OnDispose();
        Loop.Detach(this);
        if (_extras?.Prepare is not null)
        {
            More.Prepare = null;
            Loop.TrackPrepare(this, false);
        }
        if (_extras?.Destroy is { } destroy)
        {
            More.Destroy = null;
            Loop.TrackDestroy(this, false);
            destroy(this);
        }
    }

    /// <inheritdoc />
    public override string ToString() => $"{GetType().Name}({Description}, priority {Priority}, {State})";
}
