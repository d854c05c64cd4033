namespace IoMux.Hosting;

/// <summary>How <see cref="EventLoopHostedService"/> makes and runs its loops.</summary>
public sealed class EventLoopHostOptions
{
    private int _loopCount = 1;

    /// <summary>How many loops to run, each on a thread of its own (default 1). The configure callback is called
    /// once per loop with its index, so each can, say, bind its own SO_REUSEPORT listener.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Below 1.</exception>
    public int LoopCount
    {
        get => _loopCount;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1);
            _loopCount = value;
        }
    }

    /// <summary>The backend by name ("epoll", "poll", "select" ...); null (the default) takes the one
    /// <see cref="PollerFactory.Create()"/> picks: <c>IOMUX_BACKEND</c>, or the best for this OS.</summary>
    public string? Backend { get; set; }

    /// <summary>When a loop exits or fails on its own while the host runs (its code called <c>Exit</c>, or a
    /// callback threw), stop the application (default true), as a <c>BackgroundService</c> that fails does:
    /// a server whose loop is gone should not look alive. False leaves the host running without that loop.</summary>
    public bool StopApplicationWhenALoopEnds { get; set; } = true;
}
