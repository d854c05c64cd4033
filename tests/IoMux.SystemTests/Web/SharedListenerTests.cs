using System.Net;
using System.Net.Sockets;
using IoMux.Interop;

namespace IoMux.Tests.Web;

/// <summary>The other answer to spreading accepts over loop threads: one listener shared by every loop. Four
/// threads, each with its own epoll poller, wait on the same listening socket; connections arrive one at a time,
/// while every thread sleeps. Without <see cref="Interest.Exclusive"/> each arrival wakes all four (the thundering
/// herd: three of them find nothing to accept); with it (EPOLLEXCLUSIVE) one.</summary>
/// <remarks>Measured here: 182–214 wakeups for 40 connections without the flag, 40 with it.</remarks>
[Category("System")]
[NonParallelizable]
public sealed partial class SharedListenerTests
{
    private const int Threads = 4, Connections = 40;

    [Test] // every wait in Measure has its own deadline
    public void ExclusiveWakesOneLoopPerConnectionWhereLevelWakesThemAll()
    {
        var (herd, acceptedPlain) = Measure(Interest.Readable);
        var (exclusive, acceptedExclusive) = Measure(Interest.Readable | Interest.Exclusive);
        Assert.That(acceptedPlain, Is.EqualTo(Connections));
        Assert.That(acceptedExclusive, Is.EqualTo(Connections));
        // Without the flag all four sleeping loops wake for each connection (about 4 per connection measured).
        Assert.That((double)herd / Connections, Is.GreaterThan(3.0), $"{herd} wakeups for {Connections} connections: no herd to cure");
        // With it one loop wakes per connection (40 for 40 measured; the bound leaves room for a noisy machine).
        Assert.That((double)exclusive / Connections, Is.LessThan(2.5), $"{exclusive} wakeups with EPOLLEXCLUSIVE");
        Assert.That(exclusive, Is.LessThan(herd * 0.6));
    }

    /// <summary>Backends without EPOLLEXCLUSIVE ignore the flag: the registration works as a plain one.</summary>
    [TestCaseSource(typeof(Models.ModelTargets), nameof(Models.ModelTargets.WithNative))]
    public void EveryBackendAcceptsTheFlagAndReportsTheListener(BackendProvider provider)
    {
        if (provider.UnsupportedReason() is { } reason)
            Assert.Ignore(reason);
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        using var poller = new Poller(provider.Create());
        listener.Blocking = false;
        using var registration = poller.Register(listener.SafeHandle, 5, Interest.Readable | Interest.Exclusive);
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        client.Connect(listener.LocalEndPoint!);
        var events = new PollEvent[4];
        Assert.That(poller.Wait(events, TimeSpan.FromSeconds(5)), Is.EqualTo(1));
        Assert.That(events[0].Token, Is.EqualTo(5UL));
        Assert.That(events[0].Readiness & Readiness.Readable, Is.EqualTo(Readiness.Readable));
    }

    [Test]
    public void AnExclusiveRegistrationCannotBeModified()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        using var poller = PollerFactory.Create("epoll");
        listener.Blocking = false;
        using var registration = poller.Register(listener.SafeHandle, 1, Interest.Readable | Interest.Exclusive);
        Assert.Throws<NotSupportedException>(() => registration.Modify(Interest.Readable));
    }

    [System.Runtime.InteropServices.LibraryImport("libc")]
    private static partial int gettid();

    /// <summary>Voluntary context switches of a thread of this process: each is one time it slept and was woken.</summary>
    private static long SleepsOf(int tid)
    {
        foreach (var line in File.ReadLines($"/proc/self/task/{tid}/status"))
            if (line.StartsWith("voluntary_ctxt_switches:", StringComparison.Ordinal))
                return long.Parse(line.AsSpan("voluntary_ctxt_switches:".Length).Trim());
        throw new InvalidOperationException("no voluntary_ctxt_switches");
    }

    /// <summary>Wakeups are counted in the kernel (voluntary context switches of the loop threads), because a herd
    /// is invisible from user space: epoll_wait in a thread that lost the race re-checks the listener, finds it
    /// empty and goes back to sleep without returning.</summary>
    private static (long Wakeups, int Accepted) Measure(Interest interest)
    {
        int listener = Sockets.Listen(new IPEndPoint(IPAddress.Loopback, 0), 128);
        using var view = new Socket(new SafeSocketHandle(listener, ownsHandle: true));
        var endpoint = view.LocalEndPoint!;
        int accepted = 0;
        long wakeups = 0;
        var failures = new System.Collections.Concurrent.ConcurrentQueue<Exception>();
        var pollers = Enumerable.Range(0, Threads).Select(_ => PollerFactory.Create("epoll")).ToArray();
        using var ready = new CountdownEvent(Threads);
        using var measuring = new ManualResetEventSlim();
        bool stop = false;
        var loops = Enumerable.Range(0, Threads).Select(i => new Thread(() =>
        {
            try
            {
                using var registration = pollers[i].Register(listener, (ulong)i, interest);
                var events = new PollEvent[8];
                int tid = gettid();
                ready.Signal();
                if (!measuring.Wait(TimeSpan.FromSeconds(30)))
                    return; // the test gave up before the start: nothing to measure
                long before = SleepsOf(tid);
                while (!Volatile.Read(ref stop))
                {
                    if (pollers[i].Wait(events) == 0)
                        continue;
                    int fd = LibC.Accept(listener);
                    if (fd >= 0)
                    {
                        Interlocked.Increment(ref accepted);
                        LibC.CloseQuietly(fd);
                    }
                }
                Interlocked.Add(ref wakeups, SleepsOf(tid) - before - 1); // minus the wake that stopped it
            }
            catch (Exception e)
            {
                failures.Enqueue(e); // a test thread must not take the test host down
            }
        }) { IsBackground = true }).ToList();
        loops.ForEach(t => t.Start());
        Assert.That(ready.Wait(TimeSpan.FromSeconds(10)), Is.True, "the loops did not register the listener");
        measuring.Set();
        Thread.Sleep(200); // every loop is asleep in epoll_wait
        var clients = new List<Socket>();
        for (int i = 0; i < Connections && failures.IsEmpty; i++)
        {
            var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            client.Connect(endpoint);
            clients.Add(client);
            var deadline = DateTime.UtcNow.AddSeconds(5);
            while (Volatile.Read(ref accepted) <= i && DateTime.UtcNow < deadline)
                Thread.Sleep(1);
            Thread.Sleep(20); // the losers of the race go back to sleep before the next arrival
        }
        Volatile.Write(ref stop, true);
        foreach (var poller in pollers)
            poller.Wake();
        Assert.That(loops.All(t => t.Join(TimeSpan.FromSeconds(10))), Is.True, "a loop did not stop after its wake");
        foreach (var poller in pollers)
            poller.Dispose();
        clients.ForEach(c => c.Dispose());
        Assert.That(failures, Is.Empty);
        TestContext.Out.WriteLine($"{interest}: {wakeups} wakeups for {accepted} connections");
        return (wakeups, accepted);
    }
}
