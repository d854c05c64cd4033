namespace IoMux.Loop;

/// <summary>When the IoMux meters (<see cref="LoopMetrics"/>, the proxy's) come into being: with the first instance
/// they count (a loop, a proxy), unless the process deferred them. The first meter of a process costs milliseconds:
/// its observable instruments are generic instantiations over value types that ReadyToRun cannot precompile (they
/// are JIT-compiled), and the first <c>Meter</c> starts the runtime's MetricsEventSource (reflection over its
/// attributes). iomux-socket-proxyd, which socket activation starts while a client waits, defers them past the
/// first byte. A <c>MeterListener</c> started earlier is told of them when they are made (InstrumentPublished), as
/// of any meter made late; dotnet-counters too.</summary>
internal static class MeterPublication
{
    private static readonly object Lock = new();
    private static List<Action>? s_waiting; // non-null while deferring: the meters to make later

    /// <summary>From now on, meters wait for <see cref="PublishDeferred"/>.</summary>
    public static void Defer()
    {
        lock (Lock)
            s_waiting ??= [];
    }

    /// <summary>Makes the meters that waited, and stops deferring.</summary>
    public static void PublishDeferred()
    {
        List<Action>? waiting;
        lock (Lock)
        {
            waiting = s_waiting;
            s_waiting = null;
        }
        foreach (var publish in waiting ?? [])
            publish();
    }

    /// <summary>Runs <paramref name="publish"/> now, or at <see cref="PublishDeferred"/> while deferring.</summary>
    public static void Request(Action publish)
    {
        lock (Lock)
        {
            if (s_waiting is not null)
            {
                s_waiting.Add(publish);
                return;
            }
        }
        publish();
    }
}
