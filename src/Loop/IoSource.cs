using System.Runtime.InteropServices;
using System.Threading.Tasks.Sources;
using IoMux.Interop;

namespace IoMux.Loop;

/// <summary>Readiness of one descriptor. While on, it is registered with the loop's poller; switched off, it
/// is deregistered (so a hung-up descriptor cannot keep waking a loop that does not want to hear of it).
/// Either a callback gets each readiness, or (sources made without a callback) code on the loop thread
/// awaits <see cref="NextAsync()"/>: the source is then registered oneshot and re-armed by each await, and an
/// await allocates nothing (the source is its own <see cref="IValueTaskSource{TResult}"/>). An await can be
/// cancelled (<see cref="NextAsync(CancellationToken)"/>); the source stays usable.</summary>
public sealed class IoSource : EventSource, IValueTaskSource<Readiness>
{
    private readonly Action<IoSource, Readiness>? _callback;
    private Action<object?>? _continuation;
    private object? _continuationState;
    private ExecutionContext? _executionContext;
    private short _version;
    private bool _awaiting, _completed, _canceled, _armed = true;
    private Readiness _result;
    private int _fd;
    private readonly SafeHandle? _handle;
    private Registration? _registration;
    private CancellationToken _cancellation;
    private CancellationTokenRegistration _cancellationRegistration;
    private Action? _cancelOnLoop;
    private bool _closingNext; // DisposeBeforeClose: the descriptor is closed right after the disposal

    private protected override int PriorityValue { get; set; }
    private protected override string? DescriptionValue { get; set; }
    private protected override long IdValue { get; set; }
    internal override SourceVisit Visit => SourceVisit.WhenReported;

    internal IoSource(EventLoop loop, int fd, SafeHandle? handle, Interest interest, TriggerMode mode, Action<IoSource, Readiness>? callback, int priority, SourceState state, string? description)
        : base(loop, priority, state, description)
    {
        _fd = fd;
        _handle = handle;
        Interest = interest;
        Mode = mode;
        _callback = callback;
        if (state != SourceState.Off)
            Register();
    }

    /// <summary>The descriptor.</summary>
    public int Descriptor => _fd;

    /// <summary>When true, the source closes its descriptor when it goes (disposed by anyone, or with the loop), and
    /// <see cref="SetDescriptor"/> closes the one it replaces (sd_event_source_set_io_fd_own); a source on a
    /// <see cref="SafeHandle"/> disposes the handle instead. False by default: the caller owns the descriptor.</summary>
    public bool OwnsDescriptor { get; set; }

    /// <summary>Watches <paramref name="fd"/> instead, with the same interest, mode and state (sd_event_source_set_io_fd):
    /// the old descriptor's registration goes and, when the source <see cref="OwnsDescriptor"/>, the old descriptor is
    /// closed. A readiness of the old descriptor not yet dispatched is dropped.</summary>
    /// <exception cref="InvalidOperationException">The source watches a <see cref="SafeHandle"/>.</exception>
    /// <exception cref="ObjectDisposedException">The source is disposed.</exception>
    public void SetDescriptor(int fd)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(fd);
        if (_handle is not null)
            throw new InvalidOperationException("This source watches a SafeHandle; make a new source for another one.");
        if (fd == _fd)
            return;
        int old = _fd;
        if (_registration is { } previous)
        {
            // The new descriptor registered first, as sd_event_source_set_io_fd does: a refusal (select: a descriptor
            // at or above FD_SETSIZE) throws with nothing changed, the source still watching (and owning) the old one.
            // Had the source moved to the new descriptor unregistered, an owning source would close the caller's
            // descriptor at its disposal (which the caller, told of the failure, closes too) and leak the old one.
            var next = RegisterDescriptor(fd);
            previous.Dispose();
            _registration = next;
            _armed = true;
        }
        _fd = fd;
        Pending = Readiness.None;
        if (OwnsDescriptor)
            LibC.CloseQuietly(old);
    }
    /// <summary>The directions watched.</summary>
    public Interest Interest { get; private set; }
    /// <summary>The trigger mode.</summary>
    public TriggerMode Mode { get; }
    /// <summary>The poller registration while the source is on (for its I/O helpers, which re-arm edge mode).</summary>
    public Registration? Registration => _registration;
    internal Readiness Pending { get; set; }

    internal override void Reported(Readiness readiness) => Pending = readiness;

    /// <summary>Changes the watched directions.</summary>
    public void SetInterest(Interest interest)
    {
        Interest = interest;
        _registration?.Modify(interest, Mode);
    }

    private void Register()
    {
        _registration = _handle is null
            ? RegisterDescriptor(_fd)
            : Loop.Poller.Register(_handle, (ulong)Id, Interest, _callback is null ? TriggerMode.Oneshot : Mode);
        _armed = true;
    }

    private Registration RegisterDescriptor(int fd) =>
        Loop.Poller.Register(fd, (ulong)Id, Interest, _callback is null ? TriggerMode.Oneshot : Mode);

    private protected override void OnStateChanged(SourceState previous, SourceState current) => SyncRegistration();

    private protected override void OnRateLimitChanged(bool limited) => SyncRegistration();

    /// <summary>Registered exactly while on and not rate limited.</summary>
    private void SyncRegistration()
    {
        if (State == SourceState.Off || IsRateLimited)
        {
            _registration?.Dispose();
            _registration = null;
        }
        else if (_registration is null)
        {
            Register();
        }
    }

    internal override void Dispatch()
    {
        if (_callback is not null)
        {
            _callback(this, Pending);
            return;
        }
        _armed = false; // oneshot: the registration is disarmed until the next await re-arms it
        if (_awaiting)
            Complete(Pending, canceled: false);
    }

    /// <summary>Ends the pending await, with readiness or cancelled, and runs its continuation inline.</summary>
    private void Complete(Readiness result, bool canceled)
    {
        _awaiting = false;
        _result = result;
        _canceled = canceled;
        _completed = true;
        if (_cancelOnLoop is not null)
        {
            _cancellationRegistration.Unregister(); // never waits (a callback already running only posts)
            _cancellationRegistration = default;
            if (!canceled)
                _cancellation = default;
        }
        var continuation = _continuation;
        var state = _continuationState;
        var context = _executionContext;
        _continuation = null;
        _continuationState = null;
        _executionContext = null;
        if (continuation is null)
            return;
        // Completion happens on the loop thread, which is where the loop's synchronization context would
        // send the continuation anyway: run it inline instead of posting (no allocation, no extra iteration).
        if (context is null)
            continuation(state);
        else
            ExecutionContext.Run(context, static s => { var (c, st) = ((Action<object?>, object?))s!; c(st); }, (continuation, state));
    }

    /// <summary>Waits for the next readiness. Await it on the loop thread, one await at a time.</summary>
    /// <exception cref="InvalidOperationException">The source has a callback, or an await is already pending.</exception>
    public ValueTask<Readiness> NextAsync()
    {
        BeginAwait();
        return new ValueTask<Readiness>(this, _version);
    }

    /// <summary>Waits for the next readiness, or until <paramref name="cancellationToken"/> is cancelled: the await
    /// then ends with <see cref="OperationCanceledException"/> (on the loop thread, in the loop's next iteration)
    /// and the source stays usable: the next await reports readiness as usual, none is lost. Await it on the
    /// loop thread, one await at a time. A token that can be cancelled costs a registration on it per await; a
    /// token that cannot (<see cref="CancellationToken.None"/>) costs nothing, as <see cref="NextAsync()"/>.</summary>
    /// <exception cref="InvalidOperationException">The source has a callback, or an await is already pending.</exception>
    public ValueTask<Readiness> NextAsync(CancellationToken cancellationToken)
    {
        if (!cancellationToken.CanBeCanceled)
            return NextAsync();
        if (cancellationToken.IsCancellationRequested)
        {
            ThrowIfCannotAwait();
            return ValueTask.FromCanceled<Readiness>(cancellationToken);
        }
        BeginAwait();
        _cancellation = cancellationToken;
        _cancelOnLoop ??= CancelOnLoop;
        // The token may be cancelled on any thread: the cancellation goes to the loop thread as a posted action.
        _cancellationRegistration = cancellationToken.UnsafeRegister(
            static s => { var source = (IoSource)s!; source.Loop.Post(source._cancelOnLoop!, source.Priority); }, this);
        return new ValueTask<Readiness>(this, _version);
    }

    private void CancelOnLoop()
    {
        // Stale when the await it was posted for ended meanwhile (readiness won the race) and no await is pending
        // under a cancelled token now.
        if (_awaiting && _cancellation.IsCancellationRequested)
            Complete(Readiness.None, canceled: true);
    }

    private void ThrowIfCannotAwait()
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        if (_callback is not null)
            throw new InvalidOperationException("This source reports through its callback; make one without a callback to await it.");
        if (_awaiting)
            throw new InvalidOperationException("An await on this source is already pending.");
    }

    private void BeginAwait()
    {
        ThrowIfCannotAwait();
        _awaiting = true;
        _completed = false;
        _cancellation = default; // NextAsync(token) sets its own after this
        if (!_armed)
        {
            _armed = true;
            _registration?.Rearm();
        }
    }

    /// <inheritdoc />
    Readiness IValueTaskSource<Readiness>.GetResult(short token)
    {
        if (token != _version || !_completed)
            throw new InvalidOperationException("The awaited readiness is not available (awaited twice, or not completed).");
        _version++;
        if (_canceled)
        {
            var cancellation = _cancellation;
            _cancellation = default;
            _canceled = false;
            throw new OperationCanceledException("The wait for readiness was cancelled.", cancellation);
        }
        return _result;
    }

    /// <inheritdoc />
    ValueTaskSourceStatus IValueTaskSource<Readiness>.GetStatus(short token) =>
        token != _version || !_completed ? ValueTaskSourceStatus.Pending
        : _canceled ? ValueTaskSourceStatus.Canceled : ValueTaskSourceStatus.Succeeded;

    /// <inheritdoc />
    void IValueTaskSource<Readiness>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
    {
        if (_completed)
        {
            continuation(state);
            return;
        }
        _continuation = continuation;
        _continuationState = state;
        // Async methods await through UnsafeOnCompleted, which does not ask for the flow (their builder
        // carries the execution context itself): only a plain OnCompleted pays for capturing it.
        if ((flags & ValueTaskSourceOnCompletedFlags.FlowExecutionContext) != 0)
            _executionContext = ExecutionContext.Capture();
    }

    private protected override void OnDispose()
    {
        if (_closingNext)
            _registration?.DisposeBeforeClose();
        else
            _registration?.Dispose();
        _registration = null;
        if (!OwnsDescriptor)
            return;
        if (_handle is not null)
            _handle.Dispose();
        else
            LibC.CloseQuietly(_fd);
    }

    /// <summary>Removes the source from the loop, as <see cref="EventSource.Dispose"/> does, for a descriptor the caller
    /// closes right after and never duplicated: on epoll the close removes the kernel registration, one system call
    /// less (<see cref="Registration.DisposeBeforeClose"/>). Idempotent; safe inside any callback.</summary>
    public void DisposeBeforeClose()
    {
        _closingNext = true;
        Dispose();
    }
}
