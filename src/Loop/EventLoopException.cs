namespace IoMux.Loop;

/// <summary>A callback threw: the loop stopped (after running its exit sources) and rethrows it wrapped in this.</summary>
public sealed class EventLoopException : Exception
{
    /// <summary>The callback of <paramref name="source"/> (null: an action given to <see cref="EventLoop.Post(Action, int)"/>) threw <paramref name="inner"/>.</summary>
    public EventLoopException(EventSource? source, Exception inner)
        : base($"A callback of {(source is null ? "a posted action" : source.ToString())} threw; the loop stopped.", inner)
        => FailedSource = source;

    /// <summary>The callback of something that is not a source object (a slim timer) threw.</summary>
    internal EventLoopException(string what, Exception inner)
        : base($"A callback of {what} threw; the loop stopped.", inner) { }

    /// <summary>The source whose callback threw, or null for an action given to <see cref="EventLoop.Post(Action, int)"/> or a
    /// <see cref="SlimTimer"/>'s callback.</summary>
    public EventSource? FailedSource { get; }
}
