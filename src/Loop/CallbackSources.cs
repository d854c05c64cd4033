namespace IoMux.Loop;

// The sources that are a callback and nothing else: defer, post and exit.

/// <summary>Runs in every iteration while on or oneshot (sd-event's defer source; oneshot by default, as there); the loop
/// does not sleep while one is.</summary>
public sealed class DeferSource : EventSource
{
    private readonly Action<DeferSource> _callback;

    private protected override int PriorityValue { get; set; }
    private protected override string? DescriptionValue { get; set; }
    private protected override long IdValue { get; set; }
    internal override SourceVisit Visit => SourceVisit.EachIteration;

    internal DeferSource(EventLoop loop, Action<DeferSource> callback, int priority, SourceState state, string? description)
        : base(loop, priority, state, description) => _callback = callback;

    internal override void Dispatch() => _callback(this);
}

/// <summary>Runs in every iteration in which another (non-post) source was dispatched, after all of them.</summary>
public sealed class PostSource : EventSource
{
    private readonly Action<PostSource> _callback;

    private protected override int PriorityValue { get; set; }
    private protected override string? DescriptionValue { get; set; }
    private protected override long IdValue { get; set; }
    internal override SourceVisit Visit => SourceVisit.AfterDispatch;
    internal override bool CanWakeLoop => false; // it runs because something else did

    internal PostSource(EventLoop loop, Action<PostSource> callback, int priority, SourceState state, string? description)
        : base(loop, priority, state, description) => _callback = callback;

    internal override void Dispatch() => _callback(this);
}

/// <summary>Runs when the loop exits, in priority order.</summary>
public sealed class ExitSource : EventSource
{
    private readonly Action<ExitSource> _callback;

    private protected override int PriorityValue { get; set; }
    private protected override string? DescriptionValue { get; set; }
    private protected override long IdValue { get; set; }
    internal override SourceVisit Visit => SourceVisit.AtExit;
    internal override bool CanWakeLoop => false; // it runs once the loop exits

    internal ExitSource(EventLoop loop, Action<ExitSource> callback, int priority, SourceState state, string? description)
        : base(loop, priority, state, description) => _callback = callback;

    internal override void Dispatch() => _callback(this);
}
