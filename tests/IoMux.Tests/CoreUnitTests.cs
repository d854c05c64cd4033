using IoMux.Interop;

namespace IoMux.Tests;

/// <summary>The pieces of Core that are pure logic: the readiness rules, deadlines, the wake gate, errno names.</summary>
public sealed class CoreUnitTests
{
    private const Interest Both = Interest.Readable | Interest.Writable;

    // in, out, pri, err, hup, rdhup → expected, for a Readable|Writable registration
    [TestCase(true, true, false, false, false, true, Readiness.Readable | Readiness.Writable | Readiness.ReadHangup, TestName = "H1 peer FIN")]
    [TestCase(true, true, false, true, true, true, Readiness.Readable | Readiness.Writable | Readiness.ReadHangup | Readiness.Hangup | Readiness.Error, TestName = "H3 reset")]
    [TestCase(false, true, false, false, false, false, Readiness.Writable, TestName = "H5 local SHUT_WR")]
    [TestCase(false, false, false, false, true, false, Readiness.Readable | Readiness.Writable | Readiness.ReadHangup | Readiness.Hangup, TestName = "H8 pipe HUP only")]
    [TestCase(false, true, false, true, false, false, Readiness.Readable | Readiness.Writable | Readiness.Error, TestName = "H10 pipe writer ERR")]
    [TestCase(false, true, false, false, true, false, Readiness.Writable, TestName = "H12 unconnected socket HUP is dropped")]
    [TestCase(false, false, true, false, false, false, Readiness.None, TestName = "priority not asked for")]
    public void NormalisesKernelBits(bool input, bool output, bool pri, bool err, bool hup, bool rdhup, Readiness expected)
    {
        Assert.That(ReadinessRules.Normalize(Both, input, output, pri, err, hup, rdhup), Is.EqualTo(expected));
    }

    [Test]
    public void DirectionsNotAskedForAreNotReported()
    {
        Assert.That(ReadinessRules.Normalize(Interest.Writable, input: true, output: true, false, false, false, readHangup: true), Is.EqualTo(Readiness.Writable));
        Assert.That(ReadinessRules.Normalize(Interest.Readable, input: false, output: false, false, false, hangup: true, false),
            Is.EqualTo(Readiness.Readable | Readiness.ReadHangup | Readiness.Hangup));
        // A paused registration is silent, errors and hangups included (rule 10, N1).
        Assert.That(ReadinessRules.Normalize(Interest.None, false, false, false, error: true, hangup: true, false), Is.EqualTo(Readiness.None));
        Assert.That(ReadinessRules.Normalize(Interest.Writable, false, false, false, error: true, false, false), Is.EqualTo(Readiness.Writable | Readiness.Error));
    }

    [Test]
    public void DeadlineSlicesAreCappedAndNeverNegative()
    {
        var far = WaitDeadline.Start(TimeSpan.FromDays(3650));
        Assert.That(far.NextSlice(), Is.EqualTo(WaitDeadline.MaxSlice));
        var now = WaitDeadline.Start(TimeSpan.Zero);
        Assert.That(now.HasPassed, Is.True);
        Assert.That(now.NextSlice(), Is.EqualTo(TimeSpan.Zero));
        Assert.That(WaitDeadline.Start(Timeout.InfiniteTimeSpan).NextSlice(), Is.EqualTo(Timeout.InfiniteTimeSpan));
        Assert.Throws<ArgumentOutOfRangeException>(() => WaitDeadline.Start(TimeSpan.FromMilliseconds(-2)));
        Assert.That(WaitDeadline.Start(TimeSpan.MaxValue).IsInfinite, Is.True, "an unrepresentable deadline is infinite, not an overflow");
    }

    [TestCase(0L, 0)]
    [TestCase(1L, 1)]            // 100 ns → 1 ms, never 0
    [TestCase(1_000L, 1)]        // 100 µs → 1 ms
    [TestCase(10_000L, 1)]       // exactly 1 ms
    [TestCase(10_001L, 2)]
    public void MillisecondTimeoutsRoundUp(long ticks, int expected) =>
        Assert.That(WaitDeadline.ToMillisecondsRoundedUp(TimeSpan.FromTicks(ticks)), Is.EqualTo(expected));

    [Test]
    public void WakeGateWritesOncePerSleep()
    {
        var gate = new WakeCoalescer();
        Assert.That(gate.Request(), Is.False, "no waiter sleeps: the request is seen before blocking, no write");
        Assert.That(gate.PrepareToSleep(), Is.False, "a pending request forbids blocking");
        Assert.That(gate.FinishSleep(), Is.True, "and is consumed");
        Assert.That(gate.PrepareToSleep(), Is.True);
        Assert.That(gate.Request(), Is.True, "first request while asleep writes");
        Assert.That(gate.Request(), Is.False, "later ones coalesce");
        Assert.That(gate.FinishSleep(), Is.True);
        Assert.That(gate.IsRequested, Is.False);
    }

    [Test]
    public void CloseGuardRefusesEntryAfterClose()
    {
        var guard = new CloseGuard();
        Assert.That(guard.TryEnter(), Is.True);
        guard.Exit();
        Assert.That(guard.Close(), Is.True);
        Assert.That(guard.Close(), Is.False, "only the first closer closes");
        Assert.That(guard.TryEnter(), Is.False);
    }

    [Test]
    public void ErrnoNamesMatchThisOs()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Ignore("Linux numbering");
        Assert.That(Errno.Name(9), Is.EqualTo("EBADF"));
        Assert.That(Errno.Name(11), Is.EqualTo("EAGAIN"));
        Assert.That(Errno.Name(104), Is.EqualTo("ECONNRESET"));
        Assert.That(Errno.Name(100_000), Is.EqualTo("errno 100000"));
        var e = new PosixException("epoll_ctl(ADD)", Errno.EBADF, "fd 7");
        Assert.That(e.Message, Is.EqualTo("epoll_ctl(ADD) failed: EBADF (Bad file descriptor); fd 7"));
        Assert.That(e.ErrorName, Is.EqualTo("EBADF"));
    }

    [Test]
    public void DescriptorTableDropsStaleKernelData()
    {
        var table = new DescriptorTable();
        var first = table.Add(5, 100, Interest.Readable, TriggerMode.Level);
        ulong stale = first.KernelData;
        table.Remove(first);
        var second = table.Add(6, 200, Interest.Readable, TriggerMode.Level);
        Assert.That((uint)second.KernelData, Is.EqualTo((uint)stale), "the slot is reused");
        Assert.That(table.Resolve(stale), Is.Null, "but the old generation no longer resolves");
        Assert.That(table.Resolve(second.KernelData), Is.SameAs(second));
        Assert.That(table.Resolve(DescriptorTable.WakeData), Is.Null);
        Assert.Throws<AlreadyRegisteredException>(() => table.Add(6, 1, Interest.Readable, TriggerMode.Level));
        Assert.Throws<NotRegisteredException>(() => table.Get(5));
    }
}
