using System.Diagnostics;
using IoMux.Conformance;
using IoMux.Interop;

namespace IoMux.Tests;

/// <summary><see cref="Poller.SpinBeforeSleep"/> (issue 15 item 1) on every backend and model: a spin catches what
/// arrives without sleeping, keeps the wake and timeout contracts, and never happens after an idle wait.</summary>
[TestFixtureSource(typeof(SpinTests), nameof(Backends))]
public sealed unsafe class SpinTests(BackendProvider backend)
{
    public static IEnumerable<TestFixtureData> Backends =>
        Models.ModelTargets.WithNative.Select(t => new TestFixtureData(t).SetArgDisplayNames(t.Name));

    private Poller _poller = null!;
    private int _read, _write;
    private readonly PollEvent[] _events = new PollEvent[8];

    [SetUp]
    public void Create()
    {
        if (backend.UnsupportedReason() is { } reason)
            Assert.Ignore(reason);
        _poller = new Poller(backend.Create()) { SpinBeforeSleep = TimeSpan.FromSeconds(1) };
        LibC.CreateNonBlockingPipe(out _read, out _write);
        _poller.Register(_read, 1, Interest.Readable);
    }

    [TearDown]
    public void Dispose()
    {
        _poller?.Dispose();
        LibC.CloseQuietly(_read);
        LibC.CloseQuietly(_write);
    }

    private void WriteByte()
    {
        byte one = 1;
        Assert.That((int)LibC.write(_write, &one, 1), Is.EqualTo(1));
    }

    private void ReadAll()
    {
        byte* buffer = stackalloc byte[64];
        while (LibC.read(_read, buffer, 64) > 0)
        {
        }
    }

    /// <summary>A wait that found events makes the next blocking wait poll first: what is ready then is a spin hit,
    /// found without a kernel sleep.</summary>
    [Test]
    public void AfterABusyWaitTheNextWaitSpinsAndCatchesWhatArrives()
    {
        WriteByte();
        Assert.That(_poller.Wait(_events, TimeSpan.FromSeconds(5)), Is.EqualTo(1), "the busy wait");
        ReadAll();
        var writer = new Thread(() =>
        {
            Thread.Sleep(1); // well inside the one-second budget
            WriteByte();
        });
        writer.Start();
        long spins = _poller.Counters.Spins, hits = _poller.Counters.SpinHits;
        Assert.That(_poller.Wait(_events, TimeSpan.FromSeconds(5)), Is.EqualTo(1));
        Assert.That(writer.Join(TimeSpan.FromSeconds(10)), Is.True, "the writer thread did not finish");
        Assert.That(_poller.Counters.Spins - spins, Is.EqualTo(1), "one spin");
        Assert.That(_poller.Counters.SpinHits - hits, Is.EqualTo(1), "the spin caught the byte");
    }

    /// <summary>A wake during a spin ends the wait at once and costs no write to the wake channel (the spinning
    /// waiter never announced a sleep).</summary>
    [Test]
    public void AWakeDuringTheSpinEndsTheWaitWithoutAChannelWrite()
    {
        WriteByte();
        Assert.That(_poller.Wait(_events, TimeSpan.FromSeconds(5)), Is.EqualTo(1));
        ReadAll();
        long writes = _poller.Counters.WakeWrites, hits = _poller.Counters.SpinHits;
        var waker = new Thread(() =>
        {
            Thread.Sleep(1);
            _poller.Wake();
        });
        var clock = Stopwatch.StartNew();
        waker.Start();
        Assert.That(_poller.Wait(_events, TimeSpan.FromSeconds(5)), Is.Zero);
        Assert.That(waker.Join(TimeSpan.FromSeconds(10)), Is.True, "the waking thread did not finish");
        Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(4)), "the wake ended the wait");
        Assert.That(_poller.Counters.SpinHits - hits, Is.EqualTo(1), "the spin saw the wake");
        Assert.That(_poller.Counters.WakeWrites, Is.EqualTo(writes), "a wake caught by the spin writes nothing");
    }

    /// <summary>The spin never outlasts the caller's timeout, and a wait that timed out (an idle loop) does not spin
    /// next time.</summary>
    [Test]
    public void TheTimeoutBoundsTheSpinAndAnIdleWaitDoesNotSpin()
    {
        WriteByte();
        Assert.That(_poller.Wait(_events, TimeSpan.FromSeconds(5)), Is.EqualTo(1));
        ReadAll();
        var clock = Stopwatch.StartNew();
        Assert.That(_poller.Wait(_events, TimeSpan.FromMilliseconds(5)), Is.Zero);
        Assert.That(clock.Elapsed, Is.GreaterThanOrEqualTo(TimeSpan.FromMilliseconds(5)), "never early");
        Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromMilliseconds(150)), "the one-second spin budget outlasted the 5 ms timeout");
        long spins = _poller.Counters.Spins;
        Assert.That(_poller.Wait(_events, TimeSpan.FromMilliseconds(5)), Is.Zero);
        Assert.That(_poller.Counters.Spins, Is.EqualTo(spins), "a wait after a timed-out one spins");
    }

    /// <summary>Off by default (unless IOMUX_SPIN_US says otherwise), and refused outside zero to one second.</summary>
    [Test]
    public void OffByDefaultAndBounded()
    {
        using var plain = new Poller(backend.Create());
        Assert.That(plain.SpinBeforeSleep, Is.EqualTo(Poller.SpinFromEnvironment() ?? TimeSpan.Zero));
        Assert.Throws<ArgumentOutOfRangeException>(() => plain.SpinBeforeSleep = TimeSpan.FromTicks(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => plain.SpinBeforeSleep = TimeSpan.FromSeconds(2));
    }
}
