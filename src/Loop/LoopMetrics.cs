using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;

namespace IoMux.Loop;

/// <summary>The <c>IoMux.Loop</c> meter: what the <see cref="EventLoop"/>s of the process do, summed over the loops
/// (<c>dotnet-counters monitor --counters IoMux.Loop</c>, or any <see cref="MeterListener"/> such as
/// OpenTelemetry's <c>AddMeter("IoMux.*")</c>). Without a host the meter is process-wide (made with the first loop,
/// or later when the process defers it: <see cref="MeterPublication"/>); a loop given to
/// <see cref="UseMeterFactory"/> is counted instead in the meter that factory makes (IoMux.Hosting and
/// IoMux.AspNetCore do so with the host's <see cref="IMeterFactory"/>), so a host's meter holds its own loops and
/// goes with the host. The counters are observable over plain fields the loops keep; the wait time and the lag need
/// a clock read per iteration, taken only while a listener has that instrument on.</summary>
public static class LoopMetrics
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "IoMux.Loop";

    /// <summary>The process-wide meter's loops (every loop starts here).</summary>
    internal static readonly LoopMeter Default = new(() => new Meter(MeterName, Version));

    private static readonly ConditionalWeakTable<IMeterFactory, LoopMeter> FactoryMeters = [];

    private static string? Version => typeof(LoopMetrics).Assembly.GetName().Version?.ToString();

    /// <summary>Counts <paramref name="loop"/> in the <c>IoMux.Loop</c> meter that <paramref name="meterFactory"/>
    /// makes (once per factory) instead of the process-wide one: its instruments then have the factory as their
    /// meter's scope, and are disposed with it (a DI container's). Call it before the loop runs: what the loop
    /// counted until then stays in the meter it leaves (counters never go down) and is counted again in the new one.</summary>
    public static void UseMeterFactory(EventLoop loop, IMeterFactory meterFactory)
    {
        ArgumentNullException.ThrowIfNull(loop);
        ArgumentNullException.ThrowIfNull(meterFactory);
        var meter = FactoryMeters.GetValue(meterFactory,
            factory => new LoopMeter(() => factory.Create(new MeterOptions(MeterName) { Version = Version })));
        lock (FactoryMeters) // two hosts moving one loop at once must not both retire it from the same meter
        {
            var previous = loop.Meter;
            if (ReferenceEquals(previous, meter))
                return;
            previous.Loops.Retire(loop);
            loop.Meter = meter;
            meter.Loops.Add(loop);
        }
    }
}

/// <summary>One <c>IoMux.Loop</c> meter (the process-wide one, or a host's) and the loops it sums over.</summary>
internal sealed class LoopMeter
{
    private const int Iterations = 0, WaitNanoseconds = 1, Dispatches = 2, IoSources = 3;

    /// <summary>Buckets for the lag (seconds): from 10 µs, a wakeup that found little, to a second, a loop blocked
    /// by a callback; an idle loop's iterations are in the first.</summary>
    internal static readonly double[] LagSeconds = [0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];

    private readonly Func<Meter> _makeMeter;
    private Instrument? _waitTime; // null until the meter is made
    private Histogram<double>? _lag;

    public LoopMeter(Func<Meter> makeMeter)
    {
        _makeMeter = makeMeter;
        Loops = new(Publish, loop => loop.Iterations, loop => loop.WaitNanoseconds, loop => loop.Dispatches, loop => loop.IoSourceCount);
    }

    /// <summary>The loops counted here.</summary>
    public MeteredInstances<EventLoop> Loops { get; }

    /// <summary>True while a listener wants the wait time: the loops then read the clock before each wait.</summary>
    public bool MeasuresWaitTime => _waitTime is { Enabled: true };

    /// <summary>True while a listener wants the lag: the loops then read the clock after each dispatch.</summary>
    public bool MeasuresLag => _lag is { Enabled: true };

    /// <summary>One iteration's lag (nanoseconds from the wait's return to the end of its dispatch).</summary>
    public void RecordLag(long nanoseconds) => _lag?.Record(nanoseconds / 1e9);

    /// <summary>Makes the meter and its instruments (once: <see cref="MeteredInstances{T}"/> asks with its first
    /// instance). The process-wide meter lives as long as the process; a factory's, as long as the factory.</summary>
    private void Publish()
    {
        var meter = _makeMeter();
        meter.CreateObservableCounter("iomux.loop.iterations", () => Loops.Sum(Iterations), "{iteration}",
            "Loop iterations completed (one wait and the dispatch of what it found).");
        meter.CreateObservableCounter("iomux.loop.dispatches", () => Loops.Sum(Dispatches), "{callback}",
            "Callbacks run: ready sources, due timers, defer, post and exit sources, posted actions.");
        meter.CreateObservableUpDownCounter("iomux.loop.io_source.count", () => Loops.Sum(IoSources, includeRetired: false), "{source}",
            "I/O and child sources registered with the loops' pollers.");
        meter.CreateObservableUpDownCounter("iomux.loop.count", () => Loops.Count, "{loop}", "Loops alive (created and not disposed).");
        _lag = meter.CreateHistogram("iomux.loop.lag", "s",
            "Per iteration, the time from the poller's wait returning to the end of the dispatch: how long an event that became ready meanwhile waited for the loop (measured while this instrument is listened to).",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LagSeconds });
        _waitTime = meter.CreateObservableCounter("iomux.loop.wait.time", () => Loops.Sum(WaitNanoseconds) / 1e9, "s",
            "Time the loops spent blocked in the poller's wait (measured while this instrument is listened to).");
    }
}
