using System.Diagnostics;
using System.Runtime.InteropServices;
using IoMux.Interop;
using IoMux.Loop;

namespace IoMux.Tests;

/// <summary>sd_event_add_memory_pressure (issue 22, docs/LOOP.md row 9): a source that calls back when the kernel's PSI
/// trigger fires, or, as systemd's own tests arrange it, when the FIFO that <c>MEMORY_PRESSURE_WATCH</c> names carries
/// something. Non-parallel: two tests set that process-wide variable.</summary>
[NonParallelizable]
[TestFixtureSource(typeof(LoopTests), nameof(LoopTests.Backends))]
public sealed unsafe partial class LoopMemoryPressureTests(BackendProvider backend)
{
    private const int O_WRONLY = 1, O_NONBLOCK = 0x800, O_CLOEXEC = 0x80000;
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int mkfifo(string path, uint mode);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    private string _dir = null!;

    [SetUp]
    public void MakeDirectory()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Ignore("memory pressure (PSI) is Linux's");
        _dir = Directory.CreateTempSubdirectory("iomux-mempress-").FullName;
    }

    [TearDown]
    public void RemoveDirectory()
    {
        if (_dir is not null)
            Directory.Delete(_dir, recursive: true);
    }

    private string Fifo()
    {
        string path = Path.Combine(_dir, "pressure");
        Assert.That(mkfifo(path, 0x180 /* 0600 */), Is.Zero, $"mkfifo: {Errno.Name(Marshal.GetLastPInvokeError())}");
        return path;
    }

    private static void Send(string fifo, string text)
    {
        int fd = Open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC); // the source holds a reader: this open does not block
        Assert.That(fd, Is.GreaterThanOrEqualTo(0), "open for writing");
        try
        {
            var bytes = System.Text.Encoding.ASCII.GetBytes(text);
            fixed (byte* b = bytes)
                Assert.That((long)LibC.write(fd, b, (nuint)bytes.Length), Is.EqualTo(bytes.Length));
        }
        finally
        {
            LibC.close(fd);
        }
    }

    private static bool RunUntil(EventLoop loop, Func<bool> done)
    {
        var clock = Stopwatch.StartNew();
        while (!done() && clock.Elapsed < Deadline)
            loop.RunOnce(TimeSpan.FromMilliseconds(200));
        return done();
    }

    private static void RunIdle(EventLoop loop)
    {
        for (int i = 0; i < 3; i++)
            loop.RunOnce(TimeSpan.FromMilliseconds(20));
    }

    /// <summary>A FIFO watched for pressure: nothing until something arrives, then one callback on the loop thread; what
    /// arrived is read and dropped, so the source does not stay ready; disposing it leaves no registration.</summary>
    [Test]
    public void AFifoCallsBackOnceForEachArrivalAndIsDrained()
    {
        using var loop = LoopTests.NewLoop(backend);
        string fifo = Fifo();
        int calls = 0;
        var source = loop.AddMemoryPressure(fifo, null, _ => calls++);
        RunIdle(loop);
        Assert.That(calls, Is.Zero, "no pressure yet");
        Send(fifo, "some avg10=1.00");
        Assert.That(RunUntil(loop, () => calls > 0), Is.True, "the arrival was not reported");
        RunIdle(loop);
        Assert.That(calls, Is.EqualTo(1), "drained: one arrival, one callback");
        Send(fifo, "again");
        Assert.That(RunUntil(loop, () => calls > 1), Is.True);
        Assert.That(source.Path, Is.EqualTo(fifo));
        source.Dispose();
        Assert.That(loop.Poller.RegistrationCount, Is.Zero);
    }

    /// <summary>The descriptor a source owns is registered exactly while the source is on and not rate limited, as an
    /// I/O source's: switched off, an arrival does not wake the loop; once the rate limit holds it back, the poller no
    /// longer watches it either.</summary>
    [Test]
    public void AFifoSourceIsRegisteredExactlyWhileOnAndNotRateLimited()
    {
        using var loop = LoopTests.NewLoop(backend);
        string fifo = Fifo();
        int calls = 0;
        var source = loop.AddMemoryPressure(fifo, null, _ => calls++, state: SourceState.Off);
        Assert.That(loop.Poller.RegistrationCount, Is.Zero, "made off");
        source.State = SourceState.On;
        Assert.That(loop.Poller.RegistrationCount, Is.EqualTo(1), "switched on");
        source.State = SourceState.Off;
        Assert.That(loop.Poller.RegistrationCount, Is.Zero, "switched off");
        Send(fifo, "while off");
        RunIdle(loop);
        Assert.That(calls, Is.Zero, "switched off, it reports nothing");
        source.SetRateLimit(TimeSpan.FromHours(1), burst: 1);
        source.State = SourceState.On;
        Assert.That(RunUntil(loop, () => calls > 0), Is.True, "switched on again, the arrival is reported");
        Assert.That(source.IsRateLimited, Is.True, "one dispatch, a burst of 1");
        Assert.That(loop.Poller.RegistrationCount, Is.Zero, "held back by its rate limit");
        source.Dispose();
        Assert.That(loop.Poller.RegistrationCount, Is.Zero);
    }

    /// <summary>A character device that never runs dry (sd-event watches character devices too, for EPOLLIN):
    /// <c>/dev/zero</c> is always readable, so the source is ready in every iteration, but each iteration still ends
    /// (one read of what is there, as sd-event's). The dispatch read until the device was empty, which /dev/zero never
    /// is: the first iteration never returned. Run on its own thread so that such a hang fails the test at its deadline.</summary>
    [Test]
    public void ACharacterDeviceThatNeverRunsDryStillLetsEachIterationEnd()
    {
        using var loop = LoopTests.NewLoop(backend);
        int calls = 0;
        MemoryPressureSource source;
        try
        {
            source = loop.AddMemoryPressure("/dev/zero", null, _ => calls++);
        }
        catch (Exception e) when (e is UnsupportedDescriptorException or PosixException)
        {
            // epoll and kqueue refuse a device without a poll operation: nothing is watched, nothing can hang.
            Assert.That(loop.Poller.RegistrationCount, Is.Zero);
            return;
        }
        var runner = new Thread(() =>
        {
            try
            {
                for (int i = 0; i < 3; i++)
                    loop.RunOnce(TimeSpan.FromMilliseconds(10));
            }
            catch (ObjectDisposedException)
            {
                // a hung iteration ends when the failed test disposes the loop (the read then says EBADF): the next
                // RunOnce must not crash the test host
            }
        }) { IsBackground = true }; // a hung one must not keep the test host alive
        runner.Start();
        Assert.That(runner.Join(Deadline), Is.True, "an iteration never ended: the dispatch read /dev/zero forever");
        Assert.That(calls, Is.EqualTo(3), "ready in every iteration, one callback each");
        source.Dispose();
    }

    /// <summary>sd_event_add_memory_pressure's environment: <c>MEMORY_PRESSURE_WATCH=/dev/null</c> (or empty) disables
    /// it; a path there is watched, and <c>MEMORY_PRESSURE_WRITE</c>'s bytes (base64) are written to it first (on a
    /// FIFO they come back as one arrival, which shows they were written).</summary>
    [Test]
    public void TheEnvironmentNamesTheFileAndTheTriggerOrDisablesTheSource()
    {
        string? watch = Environment.GetEnvironmentVariable("MEMORY_PRESSURE_WATCH");
        string? write = Environment.GetEnvironmentVariable("MEMORY_PRESSURE_WRITE");
        try
        {
            using var loop = LoopTests.NewLoop(backend);
            Environment.SetEnvironmentVariable("MEMORY_PRESSURE_WATCH", "/dev/null");
            Assert.Throws<NotSupportedException>(() => loop.AddMemoryPressure(_ => { }));
            string fifo = Fifo();
            Environment.SetEnvironmentVariable("MEMORY_PRESSURE_WATCH", fifo);
            Environment.SetEnvironmentVariable("MEMORY_PRESSURE_WRITE", Convert.ToBase64String("some 150000 2000000\0"u8.ToArray()));
            int calls = 0;
            var source = loop.AddMemoryPressure(_ => calls++);
            Assert.That(source.Path, Is.EqualTo(fifo));
            Assert.That(RunUntil(loop, () => calls > 0), Is.True, "the trigger was not written");
            RunIdle(loop);
            Assert.That(calls, Is.EqualTo(1));
        }
        finally
        {
            Environment.SetEnvironmentVariable("MEMORY_PRESSURE_WATCH", watch);
            Environment.SetEnvironmentVariable("MEMORY_PRESSURE_WRITE", write);
        }
    }

    /// <summary>The kernel's own PSI file, where this machine has one: on epoll the default trigger ("some 200000
    /// 2000000") is accepted and the source is registered for EPOLLPRI (no pressure is expected here, so no callback is
    /// asserted); the other backends refuse a regular file or EPOLLPRI, and say so, leaving no descriptor behind.</summary>
    [Test]
    public void TheKernelsPressureFileTakesTheDefaultTriggerOnEpoll()
    {
        if (Environment.GetEnvironmentVariable("MEMORY_PRESSURE_WATCH") is not null)
            Assert.Ignore("MEMORY_PRESSURE_WATCH is set for this process: the kernel's file is not the one used");
        if (!File.Exists("/proc/pressure/memory"))
            Assert.Ignore("this kernel has no PSI");
        using var loop = LoopTests.NewLoop(backend);
        if (loop.Poller.Capabilities.Name != "epoll")
        {
            int before = Directory.GetFiles("/proc/self/fd").Length;
            Assert.Catch<NotSupportedException>(() => loop.AddMemoryPressure(_ => { })); // UnsupportedDescriptorException among them
            Assert.That(Directory.GetFiles("/proc/self/fd").Length, Is.LessThanOrEqualTo(before), "the PSI file was closed");
            return;
        }
        MemoryPressureSource source;
        try
        {
            source = loop.AddMemoryPressure(_ => { });
        }
        catch (PosixException e) when (e.ErrorName is "EPERM" or "EACCES")
        {
            Assert.Ignore($"this process may not create PSI triggers: {e.Message}");
            return;
        }
        Assert.That(source.Path, Does.EndWith("memory.pressure").Or.EqualTo("/proc/pressure/memory"));
        Assert.That(loop.Poller.RegistrationCount, Is.EqualTo(1));
        RunIdle(loop);
        source.Dispose();
        Assert.That(loop.Poller.RegistrationCount, Is.Zero);
    }
}
