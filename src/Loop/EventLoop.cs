using IoMux.Interop;
using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Runtime.ExceptionServices;

namespace IoMux.Loop;

/// <summary>
/// An sd-event-style loop on one <see cref="IoMux.Poller"/>, on any backend. One iteration: compute the wait
/// timeout from the timer heaps (zero when a defer source or a posted action is waiting), wait, then mark
/// pending the ready I/O sources, the due timers, the defer sources and the posted actions, and dispatch them
/// all in priority order (lower first; equal priorities in the order they became pending), then the post
/// sources if anything else ran. The loop runs on one thread; <see cref="Post(Action, int)"/> and <see cref="Exit"/> may be
/// called from any thread (they wake the poller, coalesced).
/// </summary>
/// <remarks>Exceptions: a callback that throws stops the loop (unless its source's <see cref="EventSource.ExitOnFailure"/>
/// is false: then the source is switched off and the loop goes on, as sd-event's default); exit sources still run; <see cref="Run"/> (or
/// <see cref="RunOnce"/>) then throws <see cref="EventLoopException"/> with the original inside (<see cref="RunAsync"/>'s
/// task faults with it). A loop that
/// keeps going after an unexpected exception would do so in a state nobody planned for.</remarks>
public sealed partial class EventLoop : IDisposable
{
    /// <summary>One callback to run this iteration: a source, a posted action, or a slim timer (its record and
    /// the generation it had when found due, so one disposed meanwhile is told apart).</summary>
    private readonly struct Pending(EventSource? source, Delegate? action, int priority, long order, int timerSlot = -1, int timerGeneration = 0, object? state = null)
    {
        public readonly EventSource? Source = source;
        public readonly Delegate? Action = action; // a posted Action, Action<object?> or SendOrPostCallback
        public readonly object? State = state;
        public readonly int Priority = priority;
        public readonly int TimerSlot = timerSlot;
        public readonly int TimerGeneration = timerGeneration;
        public readonly long Order = order;
    }

    /// <summary>Priority, then the order of becoming pending.</summary>
    private sealed class ByPriority : IComparer<Pending>
    {
        public static readonly ByPriority Instance = new();

        public int Compare(Pending a, Pending b) =>
            a.Priority != b.Priority ? a.Priority.CompareTo(b.Priority) : a.Order.CompareTo(b.Order);
    }

    private readonly bool _ownsPoller;
    private readonly LoopSynchronizationContext _context;
    private readonly TimerTable _timers = new(); // every timer, slim or a TimerSource, on every clock
    // Made by the first Post: a ConcurrentQueue over a value tuple is JIT-compiled (an instantiation ReadyToRun
    // cannot precompile), and a loop that is never posted to, such as the proxy's, need not pay for it at start.
    private ConcurrentQueue<(Delegate Action, object? State, int Priority)>? _posted;
    // This iteration's callbacks, in an array rather than a List<Pending>: a List over the loop's own struct is
    // JIT-compiled at start (ReadyToRun cannot precompile an instantiation of another version bubble's generic over
    // a value type), and a socket-activated proxy's first client waits for that. Sorted only when the priorities
    // came out of order: one priority, the common case, is already in the order things became pending.
    private Pending[] _pending = new Pending[64];
    private int _pendingCount;
    private bool _pendingUnsorted;
    private readonly PollEvent[] _events = new PollEvent[256];
    private readonly long[] _now = new long[3];
    private bool _timestamped; // _now holds a wait's time (false until the first wait: Now reads the live clock)
    private readonly LoopClocks _clocks;
    private long _nextSourceId = 1, _order;
    private volatile bool _exitRequested;
    private int _exitCode;
    private int? _loopThread;
    private bool _disposed;
    private bool _exitSourcesRan;
    private EventSource[] _snapshot = new EventSource[8]; // post, exit or prepared sources, copied for a walk
    private long[] _snapshotKeys = new long[8]; // their sort keys: priority, then place in their list
    // RunAsync (EventLoop.Run.cs): called once, its task, and the id of the thread it runs the loop on.
    private int _runAsyncCalled;
    private Task<int>? _runTask;
    private int _runThreadId;

    /// <summary>A loop on <paramref name="poller"/>; <paramref name="ownsPoller"/> disposes it with the loop.</summary>
    /// <exception cref="PlatformNotSupportedException">Windows (<c>PollerFactory.IsSupported</c> is false).</exception>
    public EventLoop(Poller poller, bool ownsPoller = true)
        : this(poller, ownsPoller, LoopClocks.Default)
    {
    }

    /// <summary>A loop that reads its clocks from <paramref name="clocks"/> (tests set a clock forward through it).</summary>
    internal EventLoop(Poller poller, bool ownsPoller, LoopClocks clocks)
    {
        PlatformSupport.ThrowIfUnsupported("EventLoop");
        Poller = poller;
        _ownsPoller = ownsPoller;
        _clocks = clocks;
        _context = new LoopSynchronizationContext(this);
        Meter.Loops.Add(this);
    }

    /// <summary>The poller underneath.</summary>
    public Poller Poller { get; }

    /// <summary>Completed iterations.</summary>
    public long Iterations { get; private set; }

    /// <summary>Time spent in the poller's wait, counted while <see cref="LoopMetrics"/> has a listener for it.</summary>
    internal long WaitNanoseconds { get; private set; }

    /// <summary>Callbacks run (the iomux.loop.dispatches metric).</summary>
    internal long Dispatches { get; private set; }

    /// <summary>The loop's cached time on <paramref name="clock"/>, read once per iteration after the wait (so every
    /// callback of an iteration sees the same now). Before the first wait, the live time (as sd_event_now falls back
    /// to now(clock)): a cache from the loop's construction would make relative timers added during a slow start due
    /// early. Monotonic and boottime count from an arbitrary origin (compare and subtract them; their values mean
    /// nothing else); realtime counts from the Unix epoch. A timer's deadline (<see cref="AddTimerAt"/>,
    /// <see cref="TimerSource.Deadline"/>) is a time on this scale. Kept in nanoseconds inside; a
    /// <see cref="TimeSpan"/> here carries 100 ns ticks.</summary>
    public TimeSpan Now(LoopClock clock) => TimerSpan.ToTimeSpan(NowNanoseconds(clock));

    /// <summary><see cref="Now"/> in nanoseconds, what the loop computes with.</summary>
    internal long NowNanoseconds(LoopClock clock)
    {
        long cached = _now[(int)clock]; // an unknown clock throws here, whichever branch is taken
        return _timestamped ? cached : _clocks.Read(clock);
    }

    internal TimerTable TimerTable => _timers;
    internal long NextSourceId() => _nextSourceId++;

    /// <summary>Watches a descriptor; the callback gets the readiness.</summary>
    public IoSource AddIo(int fd, Interest interest, Action<IoSource, Readiness> callback, TriggerMode mode = TriggerMode.Level,
        int priority = 0, SourceState state = SourceState.On, string? description = null)
    {
        ThrowIfDisposed();
        return Attach(new IoSource(this, fd, null, interest, mode, callback, priority, state, description));
    }

    /// <summary>Watches a descriptor for code that awaits <see cref="IoSource.NextAsync()"/> on the loop thread.</summary>
    public IoSource AddIo(int fd, Interest interest, int priority = 0, string? description = null)
    {
        ThrowIfDisposed();
        return Attach(new IoSource(this, fd, null, interest, TriggerMode.Oneshot, null, priority, SourceState.On, description));
    }

    /// <summary>Watches the descriptor of <paramref name="handle"/>, as <see cref="Poller.Register(SafeHandle, ulong, Interest, TriggerMode)"/>
    /// does: the handle is referenced while each registration call runs, and once it is closed the source
    /// reports nothing more, even if its number is reused. A <see cref="System.Net.Sockets.Socket"/>'s handle must
    /// be non-blocking (<c>Socket.Blocking = false</c>). Dispose the source before or after the handle, either order.</summary>
    /// <exception cref="ObjectDisposedException">The handle is closed.</exception>
    /// <exception cref="BlockingSocketException">The handle is a socket in blocking mode.</exception>
    public IoSource AddIo(SafeHandle handle, Interest interest, Action<IoSource, Readiness> callback, TriggerMode mode = TriggerMode.Level,
        int priority = 0, SourceState state = SourceState.On, string? description = null)
    {
        ThrowIfDisposed();
        return Attach(new IoSource(this, DescriptorOf(handle), handle, interest, mode, callback, priority, state, description));
    }

    /// <summary>Watches the descriptor of <paramref name="handle"/> for code that awaits <see cref="IoSource.NextAsync()"/>
    /// on the loop thread (see <see cref="AddIo(SafeHandle, Interest, Action{IoSource, Readiness}, TriggerMode, int, SourceState, string?)"/>).</summary>
    /// <exception cref="ObjectDisposedException">The handle is closed.</exception>
    /// <exception cref="BlockingSocketException">The handle is a socket in blocking mode.</exception>
    public IoSource AddIo(SafeHandle handle, Interest interest, int priority = 0, string? description = null)
    {
        ThrowIfDisposed();
        return Attach(new IoSource(this, DescriptorOf(handle), handle, interest, TriggerMode.Oneshot, null, priority, SourceState.On, description));
    }

    private static int DescriptorOf(SafeHandle handle)
    {
        ArgumentNullException.ThrowIfNull(handle);
        ObjectDisposedException.ThrowIf(handle.IsClosed, handle);
        if (handle.IsInvalid)
            throw new ArgumentException("The handle is invalid.", nameof(handle));
        return (int)handle.DangerousGetHandle();
    }

    /// <summary>A timer due <paramref name="delay"/> from the loop's now; repeating when <paramref name="period"/> is set.</summary>
    public TimerSource AddTimer(TimeSpan delay, Action<TimerSource> callback, TimeSpan? accuracy = null, TimeSpan? period = null,
        LoopClock clock = LoopClock.Monotonic, int priority = 0, string? description = null)
        => AddTimerAtNanoseconds(TimerSpan.After(NowNanoseconds(clock), delay), callback, accuracy, period, clock, priority, description);

    /// <summary>A timer due at <paramref name="deadline"/>, a time on <paramref name="clock"/> (see <see cref="Now"/>).</summary>
    public TimerSource AddTimerAt(TimeSpan deadline, Action<TimerSource> callback, TimeSpan? accuracy = null, TimeSpan? period = null,
        LoopClock clock = LoopClock.Monotonic, int priority = 0, string? description = null)
        => AddTimerAtNanoseconds(TimerSpan.Nanoseconds(deadline), callback, accuracy, period, clock, priority, description);

    private TimerSource AddTimerAtNanoseconds(long deadlineNanoseconds, Action<TimerSource> callback, TimeSpan? accuracy, TimeSpan? period,
        LoopClock clock, int priority, string? description)
    {
        ThrowIfCannotAddTimer(clock);
        long accuracyNs = TimerSpan.Nanoseconds(accuracy ?? TimerSource.DefaultAccuracy);
        long periodNs = TimerSpan.Nanoseconds(period ?? TimeSpan.Zero);
        return new TimerSource(this, clock, TimerSpan.Deadline(deadlineNanoseconds), accuracyNs, periodNs, callback, priority,
            periodNs > 0 ? SourceState.On : SourceState.Oneshot, description);
    }

    /// <summary>A slim timer due <paramref name="delay"/> from the loop's now; repeating when <paramref name="period"/>
    /// is set. Not a source object: a record in the loop's timer table behind a <see cref="SlimTimer"/> handle;
    /// adding and cancelling one allocates nothing. A oneshot's record is freed once its callback returns
    /// (unless the callback re-armed it); dispose a repeating one to end it.</summary>
    /// <exception cref="PlatformNotSupportedException"><paramref name="clock"/> is <see cref="LoopClock.Boottime"/> where there is none.</exception>
    public SlimTimer AddSlimTimer(TimeSpan delay, Action<SlimTimer> callback, TimeSpan? accuracy = null, TimeSpan? period = null,
        LoopClock clock = LoopClock.Monotonic, int priority = 0)
        => AddSlimTimerAtNanoseconds(TimerSpan.After(NowNanoseconds(clock), delay), callback, accuracy, period, clock, priority);

    /// <summary>A slim timer due at <paramref name="deadline"/>, a time on <paramref name="clock"/> (see
    /// <see cref="AddSlimTimer"/> and <see cref="Now"/>).</summary>
    /// <exception cref="PlatformNotSupportedException"><paramref name="clock"/> is <see cref="LoopClock.Boottime"/> where there is none.</exception>
    public SlimTimer AddSlimTimerAt(TimeSpan deadline, Action<SlimTimer> callback, TimeSpan? accuracy = null, TimeSpan? period = null,
        LoopClock clock = LoopClock.Monotonic, int priority = 0)
        => AddSlimTimerAtNanoseconds(TimerSpan.Nanoseconds(deadline), callback, accuracy, period, clock, priority);

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private SlimTimer AddSlimTimerAtNanoseconds(long deadlineNanoseconds, Action<SlimTimer> callback, TimeSpan? accuracy, TimeSpan? period,
        LoopClock clock, int priority)
    {
        ArgumentNullException.ThrowIfNull(callback);
        ThrowIfCannotAddTimer(clock);
        // The deadline is saturated already: TimerSpan.After and TimerSpan.Nanoseconds both stop at Never.
        long latest = deadlineNanoseconds + TimerSpan.Nanoseconds(accuracy ?? TimerSource.DefaultAccuracy);
        long periodNs = TimerSpan.Nanoseconds(period ?? TimeSpan.Zero);
        int slot = _timers.Add(clock, deadlineNanoseconds, latest, periodNs, callback, priority, out int generation);
        return new SlimTimer(this, slot, generation);
    }

    /// <summary>A monotonic timer on a live loop, the usual case, costs one test; the rest is out of line.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private void ThrowIfCannotAddTimer(LoopClock clock)
    {
        if (_disposed | clock != LoopClock.Monotonic)
            CheckUnusualTimer(clock);
    }

    private void CheckUnusualTimer(LoopClock clock)
    {
        ThrowIfDisposed();
        if (clock == LoopClock.Boottime && !BootClock.IsAvailable)
            throw new PlatformNotSupportedException("CLOCK_BOOTTIME exists on Linux only.");
        if (clock != LoopClock.Monotonic && !_clockTimerTried[(int)clock])
            SetUpClockTimer(clock);
    }

    /// <summary>A callback run in the next iteration, once by default (sd_event_add_defer's
    /// <see cref="SourceState.Oneshot"/>): switch it on again, or make it with <see cref="SourceState.On"/>, to run it
    /// in every iteration (the loop does not sleep while one is on).</summary>
    public DeferSource AddDefer(Action<DeferSource> callback, int priority = 0, SourceState state = SourceState.Oneshot, string? description = null)
    {
        ThrowIfDisposed();
        return Attach(new DeferSource(this, callback, priority, state, description));
    }

    /// <summary>A callback run after every iteration that dispatched something else.</summary>
    public PostSource AddPost(Action<PostSource> callback, int priority = 0, SourceState state = SourceState.On, string? description = null)
    {
        ThrowIfDisposed();
        return Attach(new PostSource(this, callback, priority, state, description));
    }

    /// <summary>A callback run when the loop exits.</summary>
    public ExitSource AddExit(Action<ExitSource> callback, int priority = 0, SourceState state = SourceState.On, string? description = null)
    {
        ThrowIfDisposed();
        return Attach(new ExitSource(this, callback, priority, state, description));
    }

    /// <summary>Delivers <paramref name="signal"/> on the loop thread (see <see cref="SignalSource"/>). One source per
    /// signal per loop, as sd_event_add_signal (-EBUSY for a second): several would each be told of every delivery,
    /// which a program ported from sd-event does not expect. The loop's own helpers (<see cref="SignalExit"/>, the
    /// SIGCHLD source behind child sources) do not count.</summary>
    /// <exception cref="InvalidOperationException">This loop has a source for <paramref name="signal"/> already.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="signal"/> is one a loop cannot serve: a fault the
    /// faulting thread must handle at once (SIGILL, SIGTRAP, SIGFPE, SIGBUS, SIGSEGV, SIGSYS), SIGKILL or SIGSTOP, or one
    /// the C library and the runtime keep for themselves (on Linux 32 up to SIGRTMIN: glibc's thread cancellation and
    /// setxid, .NET's thread activation; FreeBSD's SIGTHR and SIGLIBRT; illumos's SIGWAITING, SIGLWP, SIGCANCEL).</exception>
    public SignalSource AddSignal(PosixSignal signal, Action<SignalSource, int> callback, int priority = 0,
        SourceState state = SourceState.On, string? description = null)
    {
        ThrowIfDisposed();
        if (SignalFacts.Here.WhyRefused(signal, OperatingSystem.IsLinux() ? RealtimeSignals.Minimum : 0) is { } refused)
            throw new ArgumentOutOfRangeException(nameof(signal), (int)signal, refused);
        foreach (var source in _whenSignalled)
            if (source is SignalSource { IsLoopHelper: false } other && other.Signal == signal)
                throw new InvalidOperationException($"This loop has a source for {other.Description} already ({other}); one per signal per loop.");
        return AddSignalSource(signal, callback, priority, state, description, loopHelper: false);
    }

    private SignalSource AddSignalSource(PosixSignal signal, Action<SignalSource, int> callback, int priority, SourceState state, string? description,
        bool loopHelper) =>
        Attach(new SignalSource(this, signal, callback, priority, state, description, loopHelper));

    /// <summary>Reports the exit of child <paramref name="pid"/> (one this process spawned and nobody else reaps;
    /// see <see cref="ChildSource"/>) with its <see cref="ChildStatus"/>, and, if <paramref name="events"/> asks, its
    /// stops and resumptions (sd_event_add_child's WSTOPPED and WCONTINUED). The source disposes itself after reporting
    /// the end.</summary>
    /// <exception cref="PosixException">ESRCH: no such process.</exception>
    /// <exception cref="ArgumentException"><paramref name="events"/> lacks <see cref="ChildEvents.Exited"/>.</exception>
    public ChildSource AddChild(int pid, Action<ChildSource, ChildStatus> callback, ChildEvents events = ChildEvents.Exited,
        int priority = 0, string? description = null)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(callback);
        return Attach(new ChildSource(this, pid, events, callback, priority, description));
    }

    /// <summary>Pings systemd's watchdog from this loop, as sd_event_set_watchdog does, when the service has one
    /// (<c>WATCHDOG_USEC</c>, for this pid): the first ping at once, as sd-event's, then every half timeout from the
    /// loop's own iterations. Returns the watchdog, or null when there is none. See <see cref="LoopWatchdog"/>.</summary>
    /// <exception cref="FormatException">WATCHDOG_USEC or WATCHDOG_PID is malformed.</exception>
    public LoopWatchdog? EnableWatchdog(SdNotifier? notifier) => LoopWatchdog.Enable(this, notifier);

    /// <summary>True on the thread that is running an iteration right now.</summary>
    public bool IsLoopThread => _loopThread == Environment.CurrentManagedThreadId;

    /// <summary>Runs <paramref name="action"/> on the loop thread in its next iteration, at <paramref name="priority"/>.
    /// Any thread; no lock on the loop's path (a concurrent queue plus the poller's coalesced wake).</summary>
    public void Post(Action action, int priority = 0)
    {
        ArgumentNullException.ThrowIfNull(action);
        Enqueue(action, null, priority);
    }

    /// <summary>Runs <c>action(state)</c> on the loop thread in its next iteration, at <paramref name="priority"/>.
    /// Any thread. Unlike a lambda that captures its data, a static lambda or a cached delegate with the data in
    /// <paramref name="state"/> allocates nothing per post once the queue has grown (as
    /// <c>ThreadPool.UnsafeQueueUserWorkItem(Action&lt;object?&gt;, object?, bool)</c>); a value type in
    /// <paramref name="state"/> is boxed.</summary>
    public void Post(Action<object?> action, object? state, int priority = 0)
    {
        ArgumentNullException.ThrowIfNull(action);
        Enqueue(action, state, priority);
    }

    /// <summary>Posts one of the delegate types <see cref="Invoke"/> knows; the synchronization context posts its
    /// <see cref="SendOrPostCallback"/> as it is, without a closure per continuation.</summary>
    internal void Enqueue(Delegate action, object? state, int priority)
    {
        var posted = Volatile.Read(ref _posted);
        if (posted is null)
        {
            Interlocked.CompareExchange(ref _posted, new(), null);
            posted = _posted;
        }
        posted.Enqueue((action, state, priority));
        WakeUp();
    }

    /// <summary>Asks the loop to exit with <paramref name="code"/> after the current iteration. Any thread.</summary>
    public void Exit(int code = 0)
    {
        _exitCode = code;
        _exitRequested = true;
        WakeUp();
    }

    /// <summary>Iterates until <see cref="Exit"/>; runs the exit sources; returns the exit code.</summary>
    public int Run()
    {
        while (!_exitRequested)
            Iterate(Timeout.InfiniteTimeSpan);
        RunExitSources();
        return _exitCode;
    }

    /// <summary>One iteration, waiting at most <paramref name="timeout"/>. Returns false once the loop has exited
    /// (its exit sources then ran).</summary>
    public bool RunOnce(TimeSpan timeout)
    {
        if (!_exitRequested)
            Iterate(timeout);
        if (!_exitRequested)
            return true;
        RunExitSources();
        return false;
    }

    private void Iterate(TimeSpan maxTimeout)
    {
        if (_phase != Phase.Initial)
            throw new InvalidOperationException("An iteration begun by Prepare is open: finish it with Wait (and Dispatch) first.");
        var previousContext = Enter();
        try
        {
            RunPrepareCallbacks();
            if (ExitOnIdle && !_exitRequested && IsIdle())
            {
                // sd-event checks before it polls: nothing could ever wake this wait, so exit as if asked, with 0.
                _exitCode = 0;
                _exitRequested = true;
                return;
            }
            if (_onePerIteration && _pendingCount > 0)
            {
                DispatchPending(); // sd_event_prepare found work pending: sd_event_run dispatches without a wait
                Iterations++;
                return;
            }
            var timeout = ComputeTimeout(maxTimeout);
            long waitStart = Meter.MeasuresWaitTime ? _clocks.Read(LoopClock.Monotonic) : 0;
            int n = Poller.Wait(_events, timeout);
            UpdateNow();
            if (waitStart != 0)
                WaitNanoseconds += NowNanoseconds(LoopClock.Monotonic) - waitStart;
            ExpireRateLimits();
            CollectPending(n);
            DispatchPending();
            MeasureLag();
            Iterations++;
        }
        finally
        {
            Leave(previousContext);
        }
    }

    /// <summary>Takes the loop for this thread, with its synchronization context installed; <see cref="Leave"/> gives it back.</summary>
    private SynchronizationContext? Enter()
    {
        ThrowIfDisposed();
        int thread = Environment.CurrentManagedThreadId;
        if (_loopThread is { } owner && owner != thread)
            throw new InvalidOperationException("The loop runs on one thread; another thread is running it.");
        // A nested run would clear the outer iteration's pending list and drop its remaining callbacks (sd-event
        // answers -EBUSY to sd_event_run from a callback).
        if (_loopThread is not null)
            throw new InvalidOperationException("The loop is running: Run, RunOnce, Prepare, Wait and Dispatch cannot be called from one of its own callbacks.");
        _loopThread = thread;
        var previousContext = SynchronizationContext.Current;
        SynchronizationContext.SetSynchronizationContext(_context);
        return previousContext;
    }

    private void Leave(SynchronizationContext? previousContext)
    {
        SynchronizationContext.SetSynchronizationContext(previousContext);
        _loopThread = null;
    }

    /// <summary>The wait ends at the earliest "latest" moment of any timer: every timer whose window contains
    /// that moment is then due and runs in the same iteration, which is how overlapping windows coalesce into
    /// one wakeup.</summary>
    private TimeSpan ComputeTimeout(TimeSpan maxTimeout)
    {
        if (Volatile.Read(ref _posted) is { IsEmpty: false } || _exitRequested || AnyPending(_whenSignalled) || AnyPending(_eachIteration))
            return TimeSpan.Zero;
        long wait = long.MaxValue; // nanoseconds
        long limitEnd = EarliestLimitEnd();
        if (limitEnd != long.MaxValue && _clockTimers[(int)LoopClock.Monotonic] is null)
            wait = Math.Max(0, limitEnd - _clocks.Read(LoopClock.Monotonic));
        foreach (var clock in (ReadOnlySpan<LoopClock>)[LoopClock.Monotonic, LoopClock.Realtime, LoopClock.Boottime])
        {
            long latest = _timers.EarliestLatest(clock);
            if (_clockTimers[(int)clock] is { } kernelTimer)
            {
                // An absolute kernel timer wakes the poller: no relative wait, which a clock jump would make wrong (and
                // which an outer loop polling an embedded loop's descriptor would not see: see Descriptor).
                ArmClockTimer(clock, kernelTimer, clock == LoopClock.Monotonic ? Math.Min(latest, limitEnd) : latest);
                continue;
            }
            if (latest != long.MaxValue)
                wait = Math.Min(wait, Math.Max(0, latest - _clocks.Read(clock)));
        }
        var timeout = wait == long.MaxValue ? Timeout.InfiniteTimeSpan : TimeSpan.FromTicks((wait + 99) / 100);
        if (maxTimeout != Timeout.InfiniteTimeSpan && (timeout == Timeout.InfiniteTimeSpan || maxTimeout < timeout))
            timeout = maxTimeout;
        return timeout;
    }

    private static bool AnyPending(List<EventSource> sources)
    {
        foreach (var source in sources)
            if (HasWork(source))
                return true;
        return false;
    }

    /// <summary>A signal or defer source with something to dispatch now: on, not rate limited, and pending.</summary>
    private static bool HasWork(EventSource source) =>
        source.State != SourceState.Off && !source.IsRateLimited && source.IsPending;

    /// <summary>The signal or defer sources of <paramref name="sources"/> that have work, pending in list order.</summary>
    private void AddPendingFrom(List<EventSource> sources)
    {
        foreach (var source in sources)
            if (HasWork(source))
                AddPending(new Pending(source, null, source.Priority, _order++));
    }

    private long EarliestLimitEnd()
    {
        long earliest = long.MaxValue;
        foreach (var source in _limited)
            if (source.IsRateLimited)
                earliest = Math.Min(earliest, source.LimitedUntil);
        return earliest;
    }

    private void ExpireRateLimits()
    {
        long now = NowNanoseconds(LoopClock.Monotonic);
        for (int i = _limited.Count - 1; i >= 0; i--)
        {
            var source = _limited[i];
            if (source.ExpireRateLimit(now) && source.RateLimitExpireCallback is { } expired && !source.IsDisposed)
                InvokeHook(source, expired);
            if (!source.IsRateLimited || source.IsDisposed)
                _limited.RemoveAt(i);
        }
    }

    private void UpdateNow()
    {
        _now[(int)LoopClock.Monotonic] = _clocks.Read(LoopClock.Monotonic);
        _now[(int)LoopClock.Realtime] = _clocks.Read(LoopClock.Realtime);
        _now[(int)LoopClock.Boottime] = _clocks.Read(LoopClock.Boottime);
        _timestamped = true;
    }

    private void AddPending(in Pending pending)
    {
        if (_pendingCount == _pending.Length)
        {
            var grown = new Pending[_pending.Length * 2];
            Array.Copy(_pending, grown, _pendingCount);
            _pending = grown;
        }
        if (_pendingCount > 0 && pending.Priority < _pending[_pendingCount - 1].Priority)
            _pendingUnsorted = true;
        _pending[_pendingCount++] = pending;
    }

    private void CollectPending(int eventCount)
    {
        ClearPending();
        for (int i = 0; i < eventCount; i++)
        {
            if (_events[i].Token >= ClockTokenBase)
            {
                ClockTimerExpired((int)(_events[i].Token - ClockTokenBase));
                continue;
            }
            if (_sources.TryGetValue((long)_events[i].Token, out var registered) && registered.State != SourceState.Off)
            {
                registered.Reported(_events[i].Readiness);
                AddPending(new Pending(registered, null, registered.Priority, _order++));
            }
        }
        foreach (var clock in (ReadOnlySpan<LoopClock>)[LoopClock.Monotonic, LoopClock.Realtime, LoopClock.Boottime])
        {
            long now = NowNanoseconds(clock);
            while (true)
            {
                int slot = _timers.FirstDue(clock, now, out var timer);
                if (timer is not null)
                {
                    timer.OnDue();
                    AddPending(new Pending(timer, null, timer.Priority, _order++));
                }
                else if (slot >= 0)
                {
                    ref var record = ref _timers[slot];
                    _timers.Disarm(slot);
                    AddPending(new Pending(null, null, record.Priority, _order++, slot, record.Generation));
                }
                else
                {
                    break;
                }
            }
        }
        AddPendingFrom(_whenSignalled); // at equal priorities, signal sources before defer sources
        AddPendingFrom(_eachIteration);
        var queue = Volatile.Read(ref _posted);
        while (queue is not null && queue.TryDequeue(out var posted))
            AddPending(new Pending(null, posted.Action, posted.Priority, _order++, state: posted.State));
        if (_pendingUnsorted)
            Array.Sort(_pending, 0, _pendingCount, ByPriority.Instance);
    }

    private void ClearPending()
    {
        Array.Clear(_pending, 0, _pendingCount); // the sources and actions are not held past their iteration
        _pendingCount = 0;
        _pendingUnsorted = false;
    }

    private void DispatchPending()
    {
        bool dispatched = false;
        int i = 0;
        while (i < _pendingCount)
        {
            dispatched |= DispatchEntry(i++);
            if (dispatched && _onePerIteration)
                break; // sd-event's order, for the measurement (EventLoop.DispatchOrder.cs)
        }
        if (_onePerIteration)
            KeepLeftover(i);
        else
            ClearPending();
        if (!dispatched)
            return;
        // Post sources: after everything else of the iteration, in priority order.
        int count = Snapshot(_afterDispatch);
        for (int p = 0; p < count; p++)
        {
            var post = _snapshot[p];
            _snapshot[p] = null!;
            if (!post.IsDisposed && post.State != SourceState.Off)
                Invoke(post, null);
        }
    }

    /// <summary>Runs pending entry <paramref name="i"/> unless an earlier callback of this iteration disposed, switched
    /// off, rate limited or re-armed it; true when a callback ran.</summary>
    private bool DispatchEntry(int i)
    {
        ref readonly var pending = ref _pending[i];
        if (pending.Source is TimerSource { IsRateLimited: true, IsDisposed: false } held && held.State != SourceState.Off)
        {
            held.PostponeTo(held.LimitedUntil); // a due timer is not lost to its rate limit, only delayed
            return false;
        }
        if (pending.Source is { } source && (source.IsDisposed || source.State == SourceState.Off || source.IsRateLimited))
            return false; // disposed, switched off or rate limited by an earlier callback of this iteration
        if (pending.Source is TimerSource { IsArmed: true })
            return false; // re-armed by an earlier callback of this iteration: it fires at its new deadline, not now
        if (pending.TimerSlot >= 0)
            return InvokeSlimTimer(pending.TimerSlot, pending.TimerGeneration);
        Invoke(pending.Source, pending.Action, pending.State);
        pending.Source?.CountDispatch(NowNanoseconds(LoopClock.Monotonic));
        return true;
    }

    /// <summary>Copies the sources that are on into a reused array, sorted by priority, equal priorities in the
    /// order of <paramref name="sources"/> (callbacks may add or dispose sources while the copy is walked). The list
    /// order is the order the sources were added (post and exit sources) or got their prepare callback: sources keep
    /// no creation number, which a TimerSource has no room for (docs/LOOP.md). No allocation once the arrays have grown.</summary>
    private int Snapshot(List<EventSource> sources)
    {
        if (_snapshot.Length < sources.Count)
        {
            _snapshot = new EventSource[sources.Count * 2];
            _snapshotKeys = new long[sources.Count * 2];
        }
        int count = 0;
        foreach (var source in sources)
        {
            if (source.State == SourceState.Off)
                continue;
            // The priority in the high half (its sign orders it), the place in the list in the low: unique keys, so the
            // unstable sort gives a stable order.
            _snapshotKeys[count] = ((long)source.Priority << 32) | (uint)count;
            _snapshot[count++] = source;
        }
        Array.Sort(_snapshotKeys, _snapshot, 0, count);
        return count;
    }

    /// <summary>Runs a due slim timer unless an earlier callback of this iteration disposed or re-armed it.</summary>
    private bool InvokeSlimTimer(int slot, int generation)
    {
        ref var record = ref _timers[slot];
        if (record.Generation != generation || record.Phase != TimerPhase.Due)
            return false;
        var callback = (Action<SlimTimer>)record.Target!;
        if (record.Period > 0)
        {
            long accuracy = record.Latest - record.Deadline;
            record.Deadline = TimerTable.NextPeriodicDeadline(record.Deadline, record.Period, NowNanoseconds((LoopClock)record.Clock));
            record.Latest = record.Deadline + accuracy;
            _timers.Arm(slot); // before the callback, so that the callback may move or dispose it
        }
        else
        {
            record.Phase = TimerPhase.Firing;
        }
        Dispatches++;
        try
        {
            callback(new SlimTimer(this, slot, generation));
        }
        catch (Exception e)
        {
            Fail(null, "a slim timer", e);
        }
        // The callback may have added timers (the array may have moved: read the record anew), disposed this
        // one (the generation moved on) or re-armed it (armed again).
        if (_timers.IsLive(slot, generation) && _timers[slot].Phase == TimerPhase.Firing)
            _timers.Free(slot);
        return true;
    }

    private void Invoke(EventSource? source, Delegate? action, object? state = null)
    {
        Dispatches++;
        try
        {
            if (source is not null)
            {
                source.BeforeDispatch();
                source.Dispatch();
                source.AfterDispatch();
            }
            else
            {
                switch (action)
                {
                    case Action plain: plain(); break;
                    case Action<object?> withState: withState(state); break;
                    default: ((SendOrPostCallback)action!)(state); break;
                }
            }
        }
        catch (Exception e) when (source is { ExitOnFailure: false })
        {
            source.DisableAfterFailure(e); // sd-event's default: the source goes off, the loop goes on
        }
        catch (Exception e)
        {
            Fail(source, null, e);
        }
    }

    /// <summary>A callback threw: the loop stops, runs its exit sources and throws (the first failure: an exit
    /// source that throws too does not replace it).</summary>
    private void Fail(EventSource? source, string? what, Exception e)
    {
        _exitRequested = true;
        _exitCode = -1;
        var failure = what is null ? new EventLoopException(source, e) : new EventLoopException(what, e);
        RunExitSources(failure);
        ExceptionDispatchInfo.Throw(failure);
    }

    /// <summary>Runs every exit source once, in priority order. One that throws does not stop the others; the first
    /// exception is thrown once all ran, as an <see cref="EventLoopException"/> naming its source, unless the loop is
    /// already failing with <paramref name="earlier"/>, which is kept.</summary>
    private void RunExitSources(EventLoopException? earlier = null)
    {
        if (_exitSourcesRan)
            return;
        _exitSourcesRan = true;
        int count = Snapshot(_atExit);
        EventLoopException? first = null;
        for (int i = 0; i < count; i++)
        {
            var exit = _snapshot[i];
            _snapshot[i] = null!;
            if (exit.IsDisposed)
                continue;
            try
            {
                exit.BeforeDispatch();
                exit.Dispatch();
                exit.AfterDispatch();
            }
            catch (Exception e) when (!exit.ExitOnFailure)
            {
                exit.DisableAfterFailure(e);
            }
            catch (Exception e)
            {
                first ??= new EventLoopException(exit, e);
            }
        }
        if (first is not null && earlier is null)
        {
            _exitCode = -1;
            ExceptionDispatchInfo.Throw(first);
        }
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    /// <summary>Disposes every source (their destroy callbacks run) and, if the loop owns it, the poller.</summary>
    /// <exception cref="Exception">The first exception a destroy callback threw, rethrown once all is released.</exception>
    /// <exception cref="InvalidOperationException"><see cref="RunAsync"/>'s thread still runs the loop: use
    /// <see cref="DisposeAsync"/>, which asks it to exit and waits.</exception>
    public void Dispose()
    {
        if (_disposed)
            return;
        ThrowIfRunningElsewhere();
        Meter.Loops.Retire(this);
        var destroyFailure = DisposeSources();
        DisposeClockTimers();
        _disposed = true;
        if (_ownsPoller)
            Poller.Dispose();
        if (destroyFailure is not null)
            ExceptionDispatchInfo.Throw(destroyFailure); // a destroy callback's, once everything is released
    }
}
