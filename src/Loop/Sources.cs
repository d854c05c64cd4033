namespace IoMux.Loop;

/// <summary>Readiness of one descriptor. While on, it is registered with the loop's poller; switched off, it
/// is deregistered (so a hung-up descriptor cannot keep waking a loop that does not want to hear of it).</summary>
public sealed class IoSource : EventSource
{
    private readonly Action<IoSource, Readiness> _callback;
    private readonly int _fd;
    private Registration? _registration;

    internal IoSource(EventLoop loop, int fd, Interest interest, TriggerMode mode, Action<IoSource, Readiness> callback, int priority, SourceState state, string? description)
        : base(loop, priority, state, description)
    {
        _fd = fd;
        Interest = interest;
        Mode = mode;
        _callback = callback;
        if (state != SourceState.Off)
            Register();
    }

    /// <summary>The descriptor.</summary>
    public int Descriptor => _fd;
    /// <summary>The directions watched.</summary>
    public Interest Interest { get; private set; }
    /// <summary>The trigger mode.</summary>
    public TriggerMode Mode { get; }
    /// <summary>The poller registration while the source is on (for its I/O helpers, which re-arm edge mode).</summary>
    public Registration? Registration => _registration;
    internal Readiness Pending { get; set; }

    /// <summary>Changes the watched directions.</summary>
    public void SetInterest(Interest interest)
    {
        Interest = interest;
        _registration?.Modify(interest, Mode);
    }

    private void Register() => _registration = Loop.Poller.Register(_fd, (ulong)Id, Interest, Mode);

    private protected override void OnStateChanged(SourceState previous, SourceState current)
    {
        if (current == SourceState.Off)
        {
            _registration?.Dispose();
            _registration = null;
        }
        else if (_registration is null)
        {
            Register();
        }
    }

    internal override void Dispatch() => _callback(this, Pending);

    private protected override void OnDispose()
    {
        _registration?.Dispose();
        _registration = null;
    }
}

/// <summary>Runs every iteration while on (sd-event's defer source); the loop does not sleep while one is on.</summary>
public sealed class DeferSource : EventSource
{
    private readonly Action<DeferSource> _callback;

    internal DeferSource(EventLoop loop, Action<DeferSource> callback, int priority, SourceState state, string? description)
        : base(loop, priority, state, description) => _callback = callback;

    internal override void Dispatch() => _callback(this);
}

/// <summary>Runs in every iteration in which another (non-post) source was dispatched, after all of them.</summary>
public sealed class PostSource : EventSource
{
    private readonly Action<PostSource> _callback;

    internal PostSource(EventLoop loop, Action<PostSource> callback, int priority, SourceState state, string? description)
        : base(loop, priority, state, description) => _callback = callback;

    internal override void Dispatch() => _callback(this);
}

/// <summary>Runs when the loop exits, in priority order.</summary>
public sealed class ExitSource : EventSource
{
    private readonly Action<ExitSource> _callback;

    internal ExitSource(EventLoop loop, Action<ExitSource> callback, int priority, SourceState state, string? description)
        : base(loop, priority, state, description) => _callback = callback;

    internal override void Dispatch() => _callback(this);
}
