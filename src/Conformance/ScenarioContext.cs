using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using IoMux.Interop;

namespace IoMux.Conformance;

/// <summary>
/// What a scenario works with: pollers on the backend under test, descriptor pairs (TCP on loopback, AF_UNIX
/// socketpairs, pipes), waits, and checks that throw <see cref="ConformanceFailure"/>. Everything it makes is
/// released on dispose, so a failing scenario leaks nothing.
/// </summary>
public sealed unsafe class ScenarioContext : IDisposable
{
    /// <summary>How long a scenario waits for an event that must come: generous, because CI machines are
    /// shared; a passing run never waits this long.</summary>
    public static readonly TimeSpan MustArrive = TimeSpan.FromSeconds(5);

    /// <summary>How long a scenario waits for a thread it started to begin: a pool starved by a loaded machine
    /// adds a thread about every half second, so this is far above MustArrive; it only turns a hang into a failure.</summary>
    internal static readonly TimeSpan ThreadStarts = TimeSpan.FromSeconds(30);

    /// <summary>How long a scenario watches for an event that must NOT come.</summary>
    public static readonly TimeSpan Quiet = TimeSpan.FromMilliseconds(60);

    private readonly List<IDisposable> _owned = [];
    private readonly HashSet<int> _fds = [];

    internal ScenarioContext(BackendProvider backend) => Backend = backend;

    /// <summary>The backend under test.</summary>
    public BackendProvider Backend { get; }

    /// <summary>A poller on the backend under test, disposed with the context.</summary>
    public Poller NewPoller()
    {
        var poller = new Poller(Backend.Create());
        _owned.Add(poller);
        return poller;
    }

    /// <summary>A connected TCP pair on 127.0.0.1, both non-blocking.</summary>
    public (Socket Local, Socket Peer) TcpPair()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var local = Own(new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp));
        local.Connect(listener.LocalEndPoint!);
        var peer = Own(listener.Accept());
        local.Blocking = false;
        peer.Blocking = false;
        local.NoDelay = peer.NoDelay = true;
        return (local, peer);
    }

    /// <summary>A fresh TCP socket that was never connected.</summary>
    public Socket UnconnectedTcp()
    {
        var socket = Own(new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp));
        socket.Blocking = false;
        return socket;
    }

    /// <summary>A loopback port nothing listens on (bound, then closed).</summary>
    public static int ClosedPort()
    {
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)probe.LocalEndPoint!).Port;
    }

    /// <summary>An AF_UNIX stream socketpair, both ends non-blocking.</summary>
    public (int A, int B) UnixPair()
    {
        const int AF_UNIX = 1;
        int sockStream = OsAbi.SockStream(Platform.Flavor);
        int* fds = stackalloc int[2];
        if (LibC.socketpair(AF_UNIX, sockStream, 0, fds) != 0)
            throw Errno.Fail("socketpair");
        Track(fds[0]);
        Track(fds[1]);
        LibC.SetNonBlockingCloseOnExec(fds[0]);
        LibC.SetNonBlockingCloseOnExec(fds[1]);
        return (fds[0], fds[1]);
    }

    /// <summary>A pipe, both ends non-blocking.</summary>
    public (int Read, int Write) Pipe()
    {
        LibC.CreateNonBlockingPipe(out int r, out int w);
        Track(r);
        Track(w);
        return (r, w);
    }

    /// <summary>Takes ownership of a descriptor made elsewhere (closed with the context).</summary>
    public int Track(int fd)
    {
        _fds.Add(fd);
        return fd;
    }

    /// <summary>Stops tracking a descriptor that something else closed.</summary>
    public void Forget(int fd) => _fds.Remove(fd);

    /// <summary>Takes ownership of a disposable.</summary>
    public T Own<T>(T disposable) where T : IDisposable
    {
        _owned.Add(disposable);
        return disposable;
    }

    /// <summary>Closes a descriptor now.</summary>
    public void Close(int fd)
    {
        _fds.Remove(fd);
        if (LibC.close(fd) != 0)
            throw Errno.Fail("close", $"fd {fd}");
    }

    /// <summary>Writes all of <paramref name="data"/> (small writes only: the buffers must absorb them).</summary>
    public static void Write(int fd, ReadOnlySpan<byte> data)
    {
        fixed (byte* p = data)
        {
            nint n = LibC.write(fd, p, (nuint)data.Length);
            if (n != data.Length)
                throw n < 0 ? Errno.Fail("write", $"fd {fd}") : new ConformanceFailure($"short write on fd {fd}: {n} of {data.Length}");
        }
    }

    /// <summary>Writes <paramref name="count"/> bytes of 'x'.</summary>
    public static void Write(int fd, int count = 1) => Write(fd, new string('x', count).Select(c => (byte)c).ToArray());

    /// <summary>One read(2): byte count, 0 at end of stream, or -errno.</summary>
    public static int Read(int fd, Span<byte> buffer)
    {
        fixed (byte* p = buffer)
        {
            nint n = LibC.read(fd, p, (nuint)buffer.Length);
            return n >= 0 ? (int)n : -Errno.Last;
        }
    }

    /// <summary>Reads until would-block or end of stream; returns the bytes and whether it ended with EOF.</summary>
    public static (int Bytes, bool EndOfStream) Drain(int fd)
    {
        Span<byte> buffer = stackalloc byte[4096];
        int total = 0;
        while (true)
        {
            int n = Read(fd, buffer);
            if (n > 0) { total += n; continue; }
            if (n == 0) return (total, true);
            if (-n == Errno.EAGAIN) return (total, false);
            throw new PosixException("read", -n, $"fd {fd}");
        }
    }

    /// <summary>Waits once and returns a copy of the events.</summary>
    public static PollEvent[] WaitOnce(Poller poller, TimeSpan timeout)
    {
        var events = new PollEvent[64];
        int n = poller.Wait(events, timeout);
        return events[..n];
    }

    /// <summary>Waits (repeatedly, up to <see cref="MustArrive"/>) until an event for <paramref name="token"/> arrives.</summary>
    public static Readiness Expect(Poller poller, ulong token, string what)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < MustArrive)
        {
            var events = WaitOnce(poller, Left(MustArrive, clock));
            Check(events.Count(e => e.Token == token) <= 1, $"{what}: more than one event for one registration in one wait: {Show(events)}");
            foreach (var e in events)
                if (e.Token == token)
                    return e.Readiness;
        }
        throw new ConformanceFailure($"{what}: no event within {MustArrive.TotalSeconds} s");
    }

    /// <summary>Waits until an event for <paramref name="token"/> carries every flag of <paramref name="required"/>;
    /// every event seen on the way must carry none of <paramref name="forbidden"/>.</summary>
    public static Readiness Expect(Poller poller, ulong token, Readiness required, Readiness forbidden, string what)
    {
        var clock = Stopwatch.StartNew();
        var last = Readiness.None;
        while (clock.Elapsed < MustArrive)
        {
            var events = WaitOnce(poller, Left(MustArrive, clock));
            Check(events.Count(e => e.Token == token) <= 1, $"{what}: more than one event for one registration in one wait: {Show(events)}");
            foreach (var e in events.Where(e => e.Token == token))
            {
                Require(e.Readiness, Readiness.None, forbidden, what);
                if (e.Has(required))
                    return e.Readiness;
                last = e.Readiness;
            }
        }
        throw new ConformanceFailure($"{what}: expected {required} within {MustArrive.TotalSeconds} s; last event was {last}");
    }

    /// <summary>Watches <paramref name="token"/> for <see cref="Quiet"/>: every event must avoid <paramref name="forbidden"/>.
    /// Returns the union of what was reported.</summary>
    public static Readiness Watch(Poller poller, ulong token, Readiness forbidden, string what)
    {
        var clock = Stopwatch.StartNew();
        var seen = Readiness.None;
        while (clock.Elapsed < Quiet)
        {
            foreach (var e in WaitOnce(poller, Left(Quiet, clock)))
            {
                if (e.Token != token)
                    continue;
                Require(e.Readiness, Readiness.None, forbidden, what);
                seen |= e.Readiness;
            }
        }
        return seen;
    }

    /// <summary>Checks that no event for <paramref name="token"/> arrives within <see cref="Quiet"/>.</summary>
    public static void ExpectNothing(Poller poller, ulong token, string what)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < Quiet)
        {
            var events = WaitOnce(poller, Left(Quiet, clock));
            foreach (var e in events)
                if (e.Token == token)
                    throw new ConformanceFailure($"{what}: unexpected event {e.Readiness}");
        }
    }

    /// <summary>What is left of <paramref name="total"/>; never negative (the clock may pass it between the
    /// loop's check and this call).</summary>
    private static TimeSpan Left(TimeSpan total, Stopwatch clock)
    {
        var left = total - clock.Elapsed;
        return left > TimeSpan.Zero ? left : TimeSpan.Zero;
    }

    /// <summary>Checks that <paramref name="actual"/> has every flag of <paramref name="required"/> and none of <paramref name="forbidden"/>.</summary>
    public static void Require(Readiness actual, Readiness required, Readiness forbidden, string what)
    {
        if ((actual & required) != required)
            throw new ConformanceFailure($"{what}: expected {required}, got {actual} (missing {required & ~actual})");
        if ((actual & forbidden) != 0)
            throw new ConformanceFailure($"{what}: got {actual}, which must not include {actual & forbidden}");
    }

    /// <summary>Fails with <paramref name="message"/> unless <paramref name="condition"/>.</summary>
    public static void Check(bool condition, string message)
    {
        if (!condition)
            throw new ConformanceFailure(message);
    }

    /// <summary>Fails unless <paramref name="action"/> throws <typeparamref name="T"/>; returns it.</summary>
    public static T Throws<T>(Action action, string what) where T : Exception
    {
        try
        {
            action();
        }
        catch (T e)
        {
            return e;
        }
        catch (Exception e)
        {
            throw new ConformanceFailure($"{what}: expected {typeof(T).Name}, got {e.GetType().Name}: {e.Message}");
        }
        throw new ConformanceFailure($"{what}: expected {typeof(T).Name}, nothing was thrown");
    }

    /// <summary>Marks the scenario not applicable to this backend.</summary>
    public static void NotApplicable(string reason) => throw new ScenarioNotApplicable(reason);

    /// <summary>The descriptor number of a socket.</summary>
    public static int Fd(Socket socket) => (int)socket.Handle;

    private static string Show(IEnumerable<PollEvent> events) => string.Join(", ", events.Select(e => $"{e.Token}:{e.Readiness}"));

    /// <summary>Releases everything the scenario made: pollers first (they deregister), then descriptors.</summary>
    public void Dispose()
    {
        for (int i = _owned.Count - 1; i >= 0; i--)
            _owned[i].Dispose();
        foreach (var fd in _fds)
            LibC.close(fd);
        _fds.Clear();
    }
}

/// <summary>Signals for the EINTR scenario.</summary>
internal static partial class SignalInterop
{
    [LibraryImport("libc")] public static partial nuint pthread_self();
    [LibraryImport("libc")] public static partial int pthread_kill(nuint thread, int signal);

    /// <summary>SIGWINCH: its default action is to be ignored, so it can never kill the test process.</summary>
    public static int SIGWINCH => Platform.IsIllumos ? 20 : 28;
}
