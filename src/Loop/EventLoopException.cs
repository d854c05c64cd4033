namespace IoMux.Loop;

/// <summary>A callback threw: the loop stopped (after running its exit sources) and rethrows it wrapped in this.</summary>
public sealed class EventLoopException(EventSource? source, Exception inner)
    : Exception($"A callback of {(source is null ? "a posted action" : source.ToString())} threw; the loop stopped.", inner)
{
    /// <summary>The source whose callback threw, or null for an action given to <see cref="EventLoop.Post"/>.</summary>
    public EventSource? FailedSource { get; } = source;
}
