using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Sockets;
using IoMux.Interop;
using IoMux.Loop;
using IoMux.SocketProxy;
using IoMux.Tests.Proxy;
using Microsoft.Extensions.Logging.Abstractions;

namespace IoMux.Tests;

/// <summary>The IoMux.Loop and IoMux.Proxy meters seen through a <see cref="MeterListener"/>, as dotnet-counters and
/// OpenTelemetry see them: the values move as loops iterate and as the proxy relays.</summary>
[NonParallelizable] // the meters sum over every loop of the process: other tests' loops would move them too
public sealed class MetricsTests
{
    /// <summary>A listener on one meter that keeps the last value collected per instrument (and tag value).</summary>
    private sealed class MeterProbe : IDisposable
    {
        private readonly MeterListener _listener = new();
        private readonly Dictionary<string, double> _values = [];

        public MeterProbe(string meterName)
        {
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                // Observable instruments only: they report on Collect's thread, while a histogram records on any
                // loop's thread, which this dictionary could not take.
                if (instrument.Meter.Name == meterName && instrument.IsObservable)
                    listener.EnableMeasurementEvents(instrument);
            };
            _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => Record(instrument, value, tags));
            _listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) => Record(instrument, value, tags));
            _listener.Start();
        }

        private readonly Dictionary<string, string[]> _tagKeys = [];

        private void Record(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            _values[tags.Length == 0 ? instrument.Name : $"{instrument.Name}[{tags[0].Value}]"] = value;
            var keys = new string[tags.Length];
            for (int i = 0; i < tags.Length; i++)
                keys[i] = tags[i].Key;
            _tagKeys[instrument.Name] = keys;
        }

        /// <summary>The attribute names of <paramref name="instrument"/>'s last measurement.</summary>
        public string[] TagKeys(string instrument) => _tagKeys[instrument];

        /// <summary>Collects the observable instruments now; the value of each by name (name[tag] when tagged).</summary>
        public Dictionary<string, double> Collect()
        {
            _values.Clear();
            _listener.RecordObservableInstruments();
            return new Dictionary<string, double>(_values);
        }

        public void Dispose() => _listener.Dispose();
    }

    [Test] // no CancelAfter: each wait is a RunOnce with its own timeout
    public void TheLoopMeterCountsIterationsDispatchesWaitTimeSourcesAndLoops()
    {
        // The meter comes into being with the first loop of the process; this test may be the first to make one.
        new EventLoop(PollerFactory.Create()).Dispose();
        using var probe = new MeterProbe(LoopMetrics.MeterName);
        var before = probe.Collect();
        var loop = new EventLoop(PollerFactory.Create());
        LibC.CreateNonBlockingPipe(out int read, out int write);
        try
        {
            using var io = loop.AddIo(read, Interest.Readable, (_, _) => { });
            var during = probe.Collect();
            Assert.That(during["iomux.loop.count"], Is.EqualTo(before["iomux.loop.count"] + 1));
            Assert.That(during["iomux.loop.io_source.count"], Is.EqualTo(before["iomux.loop.io_source.count"] + 1));

            int ran = 0;
            for (int i = 0; i < 10; i++)
            {
                loop.Post(() => ran++);
                loop.RunOnce(TimeSpan.Zero);
            }
            for (int i = 0; i < 3; i++)
                loop.RunOnce(TimeSpan.FromMilliseconds(50)); // nothing to do: three waits of 50 ms
            var after = probe.Collect();
            Assert.That(ran, Is.EqualTo(10));
            Assert.That(after["iomux.loop.iterations"] - before["iomux.loop.iterations"], Is.GreaterThanOrEqualTo(13));
            Assert.That(after["iomux.loop.dispatches"] - before["iomux.loop.dispatches"], Is.GreaterThanOrEqualTo(10));
            Assert.That(after["iomux.loop.wait.time"] - before["iomux.loop.wait.time"], Is.InRange(0.14, 5.0));
        }
        finally
        {
            loop.Dispose();
            LibC.close(read);
            LibC.close(write);
        }
        var disposed = probe.Collect();
        Assert.That(disposed["iomux.loop.count"], Is.EqualTo(before["iomux.loop.count"]));
        Assert.That(disposed["iomux.loop.io_source.count"], Is.EqualTo(before["iomux.loop.io_source.count"]));
        // A disposed loop's totals stay in the counters (a counter never goes down).
        Assert.That(disposed["iomux.loop.iterations"] - before["iomux.loop.iterations"], Is.GreaterThanOrEqualTo(13));
    }

    /// <summary>iomux-socket-proxyd makes its meters a second in (MeterPublication): a listener started before a
    /// meter exists (dotnet-counters attached at once, OpenTelemetry set up first) is told of it when it is made.</summary>
    [Test]
    public void ADeferredMeterIsPublishedLaterToAListenerStartedBeforeIt()
    {
        string name = $"IoMux.Tests.Deferred.{Guid.NewGuid():N}";
        var published = new List<string>();
        long observed = -1;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name != name)
                return;
            published.Add(instrument.Name);
            l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((_, value, _, _) => observed = value);
        listener.Start();
        Meter? meter = null;
        MeterPublication.Defer();
        try
        {
            MeterPublication.Request(() =>
            {
                meter = new Meter(name);
                meter.CreateObservableCounter("deferred", () => 42L);
            });
            Assert.That(meter, Is.Null, "made while deferred");
        }
        finally
        {
            MeterPublication.PublishDeferred();
        }
        try
        {
            Assert.That(published, Is.EqualTo(new[] { "deferred" }));
            listener.RecordObservableInstruments();
            Assert.That(observed, Is.EqualTo(42));
            MeterPublication.Request(() => published.Add("not deferred"));
            Assert.That(published, Has.Member("not deferred"), "still deferring after PublishDeferred");
        }
        finally
        {
            meter?.Dispose();
        }
    }

    /// <summary>iomux.loop.lag: one measurement per iteration, in seconds, at least as long as the callback that held
    /// the loop; none while nobody listens to it.</summary>
    [Test] // no CancelAfter: each wait is a RunOnce with its own timeout
    public void TheLagHistogramRecordsHowLongAnIterationHeldTheLoop()
    {
        using var loop = new EventLoop(PollerFactory.Create());
        var lags = new List<double>();
        string? unit = null;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == LoopMetrics.MeterName && instrument.Name == "iomux.loop.lag")
            {
                unit = instrument.Unit;
                l.EnableMeasurementEvents(instrument);
            }
        };
        // The histogram is shared by every loop of the process: keep the measurements made on this thread, the one
        // running this test's loop.
        int thread = Environment.CurrentManagedThreadId;
        listener.SetMeasurementEventCallback<double>((_, value, tags, _) =>
        {
            if (Environment.CurrentManagedThreadId == thread)
                lags.Add(value);
        });
        loop.RunOnce(TimeSpan.Zero); // unobserved
        listener.Start();
        loop.Post(() => Thread.Sleep(60)); // a callback that holds the loop for 60 ms
        loop.RunOnce(TimeSpan.FromSeconds(5));
        loop.RunOnce(TimeSpan.FromMilliseconds(10)); // a wakeup that finds nothing: a short lag
        Assert.That(unit, Is.EqualTo("s"));
        Assert.That(lags, Has.Count.EqualTo(2), "one measurement per iteration while listened to");
        Assert.That(lags[0], Is.InRange(0.055, 10.0), "the iteration that slept 60 ms");
        Assert.That(lags[1], Is.LessThan(lags[0]));
    }

    [Test] // no CancelAfter: each wait is a RunOnce with its own timeout
    public void WithoutAListenerTheLoopDoesNotMeasureItsWaits()
    {
        using var loop = new EventLoop(PollerFactory.Create());
        for (int i = 0; i < 3; i++)
            loop.RunOnce(TimeSpan.FromMilliseconds(20));
        Assert.That(loop.WaitNanoseconds, Is.Zero, "the clock was read around each wait with nobody listening");
        Assert.That(loop.Iterations, Is.EqualTo(3));
        using (new MeterProbe(LoopMetrics.MeterName))
            loop.RunOnce(TimeSpan.FromMilliseconds(20));
        Assert.That(loop.WaitNanoseconds, Is.GreaterThanOrEqualTo(15_000_000));
    }

    [Test, CancelAfter(60_000)]
    public async Task TheProxyMeterCountsConnectionsBytesFailuresAndPausesWhileTheyHappen(CancellationToken token)
    {
        using var probe = new MeterProbe(ProxyMetrics.MeterName);
        using var backend = TestBackend.Tcp(TestBackend.Echo);
        int listener = Listeners.Bind($"127.0.0.1:{ProxyProcess.FreePort()}");
        using var view = new Socket(new SafeSocketHandle(listener, ownsHandle: false));
        var endpoint = (IPEndPoint)view.LocalEndPoint!;
        var loop = new EventLoop(PollerFactory.Create());
        var proxy = new ProxyServer(loop, [listener], new ProxyOptions { Target = BackendTarget.Parse(backend.Target) }, NullLogger.Instance);
        var before = probe.Collect();
        var run = Task.Factory.StartNew(() => loop.Run(), TaskCreationOptions.LongRunning);
        try
        {
            using (var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
            {
                await client.ConnectAsync(endpoint, token);
                await TestBackend.SendAll(client, new byte[5000]).WaitAsync(token);
                var echoed = new byte[5000];
                for (int got = 0; got < echoed.Length;)
                    got += await client.ReceiveAsync(echoed.AsMemory(got), SocketFlags.None, token);
                // The connection is still open: the bytes are counted as they are relayed, not when it closes.
                var open = probe.Collect();
                Assert.That(open["iomux.proxy.connections"] - before["iomux.proxy.connections"], Is.EqualTo(1));
                Assert.That(open["iomux.proxy.active_connections"] - before["iomux.proxy.active_connections"], Is.EqualTo(1));
                Assert.That(open["iomux.proxy.io[to_backend]"] - before["iomux.proxy.io[to_backend]"], Is.EqualTo(5000));
                Assert.That(open["iomux.proxy.io[to_clients]"] - before["iomux.proxy.io[to_clients]"], Is.EqualTo(5000));
            }
            Assert.That(ProxyProcess.Eventually(() => probe.Collect()["iomux.proxy.active_connections"] == before["iomux.proxy.active_connections"],
                TimeSpan.FromSeconds(10)), Is.True, "the closed connection is still counted as active");

            loop.Post(() => proxy.OnOutOfDescriptors(Errno.EMFILE)); // what an accept or a socket() failing with EMFILE does
            Assert.That(ProxyProcess.Eventually(() => probe.Collect()["iomux.proxy.accept.pauses"] - before["iomux.proxy.accept.pauses"] == 1,
                TimeSpan.FromSeconds(10)), Is.True, "the accept pause was not counted");
        }
        finally
        {
            loop.Post(proxy.Stop);
        }
        Assert.That(await run.WaitAsync(TimeSpan.FromSeconds(20)), Is.EqualTo(0));
        loop.Dispose();
        var stopped = probe.Collect();
        Assert.That(stopped["iomux.proxy.io[to_backend]"] - before["iomux.proxy.io[to_backend]"], Is.EqualTo(5000), "a stopped proxy's bytes left the counter");
    }

    [Test, CancelAfter(60_000)]
    public async Task TheProxyMeterCountsBackendConnectFailures(CancellationToken token)
    {
        using var probe = new MeterProbe(ProxyMetrics.MeterName);
        int listener = Listeners.Bind($"127.0.0.1:{ProxyProcess.FreePort()}");
        using var view = new Socket(new SafeSocketHandle(listener, ownsHandle: false));
        var endpoint = (IPEndPoint)view.LocalEndPoint!;
        var loop = new EventLoop(PollerFactory.Create());
        var refusing = BackendTarget.Parse($"127.0.0.1:{ProxyProcess.FreePort()}"); // nothing listens there
        var proxy = new ProxyServer(loop, [listener], new ProxyOptions { Target = refusing }, NullLogger.Instance);
        var before = probe.Collect();
        var run = Task.Factory.StartNew(() => loop.Run(), TaskCreationOptions.LongRunning);
        try
        {
            using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await client.ConnectAsync(endpoint, token);
            Assert.That((await TestBackend.ReceiveAll(client).WaitAsync(token)).Bytes, Is.Zero);
            var after = probe.Collect();
            const string Refused = "iomux.proxy.connect.failures[connection_refused]";
            Assert.That(after[Refused] - before[Refused], Is.EqualTo(1), "a refused connect has error.type connection_refused");
            Assert.That(after.Where(pair => pair.Key.StartsWith("iomux.proxy.connect.failures[", StringComparison.Ordinal)).Sum(pair => pair.Value)
                - before.Where(pair => pair.Key.StartsWith("iomux.proxy.connect.failures[", StringComparison.Ordinal)).Sum(pair => pair.Value),
                Is.EqualTo(1), "one failure, under one error.type");
            Assert.That(probe.TagKeys("iomux.proxy.connect.failures"), Is.EqualTo(new[] { "error.type" }));
        }
        finally
        {
            loop.Post(proxy.Stop);
        }
        Assert.That(await run.WaitAsync(TimeSpan.FromSeconds(20)), Is.EqualTo(0));
        loop.Dispose();
    }
}
