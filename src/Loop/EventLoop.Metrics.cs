namespace IoMux.Loop;

public sealed partial class EventLoop
{
    /// <summary>The IoMux.Loop meter that counts this loop (the process-wide one, or a host's: <see cref="LoopMetrics.UseMeterFactory"/>).</summary>
    internal LoopMeter Meter { get; set; } = LoopMetrics.Default;

    /// <summary>After a dispatch: the iteration's lag, from the wait's return (the cached Now) to this moment, while
    /// someone listens to iomux.loop.lag (one clock read; a histogram without tags records without allocating).</summary>
    private void MeasureLag()
    {
        var meter = Meter;
        if (meter.MeasuresLag)
            meter.RecordLag(_clocks.Read(LoopClock.Monotonic) - NowNanoseconds(LoopClock.Monotonic));
    }
}
