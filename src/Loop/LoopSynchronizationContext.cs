namespace IoMux.Loop;

/// <summary>Installed while the loop dispatches, so that <c>await</c> in a callback resumes on the loop thread.</summary>
public sealed class LoopSynchronizationContext(EventLoop loop) : SynchronizationContext
{
    /// <summary>The loop continuations go back to.</summary>
    public EventLoop Loop { get; } = loop;

    /// <inheritdoc />
    public override void Post(SendOrPostCallback d, object? state)
    {
        ArgumentNullException.ThrowIfNull(d);
        Loop.Enqueue(d, state, 0); // no closure per continuation
    }

    /// <inheritdoc />
    public override void Send(SendOrPostCallback d, object? state)
    {
        if (Loop.IsLoopThread)
            d(state);
        else
            throw new NotSupportedException("Send from another thread would block it on the loop; use Post.");
    }

    /// <inheritdoc />
    public override SynchronizationContext CreateCopy() => this;
}
