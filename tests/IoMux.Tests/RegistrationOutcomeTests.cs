using System.Net;
using System.Net.Sockets;
using IoMux.Conformance;
using IoMux.Interop;
using Microsoft.Win32.SafeHandles;

namespace IoMux.Tests;

/// <summary>The registration's I/O helpers report a peer that went away as an outcome, accept with the peer's
/// address, and a blocking socket is refused at registration; on every backend and model.</summary>
[TestFixtureSource(nameof(Backends))]
public sealed class RegistrationOutcomeTests(BackendProvider backend)
{
    public static IEnumerable<TestFixtureData> Backends =>
        Models.ModelTargets.WithNative.Select(t => new TestFixtureData(t).SetArgDisplayNames(t.Name));

    private ScenarioContext _context = null!;
    private Poller _poller = null!;

    [SetUp]
    public void CreatePoller()
    {
        if (backend.UnsupportedReason() is { } reason)
            Assert.Ignore(reason);
        _context = new ScenarioContext(backend);
        _poller = _context.NewPoller();
    }

    [TearDown]
    public void DisposeAll() => _context?.Dispose();

    private T Own<T>(T disposable) where T : IDisposable => _context.Own(disposable);

    private Socket Listener(EndPoint at)
    {
        var listener = Own(new Socket(at.AddressFamily, SocketType.Stream, at is UnixDomainSocketEndPoint ? ProtocolType.Unspecified : ProtocolType.Tcp));
        listener.Bind(at);
        listener.Listen();
        listener.Blocking = false;
        return listener;
    }

    /// <summary>A TCP client connected to <paramref name="listener"/>, once the poller reported the connection.</summary>
    private Socket Connect(Socket listener)
    {
        var client = Own(new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp));
        client.Connect(listener.LocalEndPoint!);
        WaitFor(1);
        return client;
    }

    private void WaitFor(ulong token)
    {
        var events = new PollEvent[4];
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(10))
        {
            int n = _poller.Wait(events, TimeSpan.FromMilliseconds(100));
            for (int i = 0; i < n; i++)
                if (events[i].Token == token)
                    return;
        }
        Assert.Fail($"token {token} was never reported");
    }

    /// <summary>A registered TCP socket whose peer reset the connection (an abortive close sends RST), once the
    /// poller reported it.</summary>
    private Registration ResetByPeer()
    {
        var (local, peer) = _context.TcpPair();
        var registration = _poller.Register(local.SafeHandle, 1, Interest.Readable);
        peer.LingerState = new LingerOption(true, 0);
        peer.Close();
        WaitFor(1);
        return registration;
    }

    [Test]
    public void AResetIsTheConnectionResetOutcomeOfReadNotAnException()
    {
        var registration = ResetByPeer();
        var buffer = new byte[16];
        Assert.That(registration.Read(buffer, out int read), Is.EqualTo(IoOutcome.ConnectionReset));
        Assert.That(read, Is.Zero);
    }

    [Test]
    public void AWriteAfterAResetIsAnOutcomeToo()
    {
        var registration = ResetByPeer();
        var first = registration.Write("x"u8, out int written);
        Assert.That(written, Is.Zero);
        // Linux returns the pending ECONNRESET first, then EPIPE (the reset shut both directions); a BSD may
        // say EPIPE at once. Neither is an exception.
        if (OperatingSystem.IsLinux())
            Assert.That(first, Is.EqualTo(IoOutcome.ConnectionReset));
        else
            Assert.That(first, Is.AnyOf(IoOutcome.ConnectionReset, IoOutcome.BrokenPipe));
        Assert.That(registration.Write("x"u8, out _), Is.EqualTo(IoOutcome.BrokenPipe));
    }

    [Test]
    public void AWriteToAPeerThatClosedIsTheBrokenPipeOutcomeOfWrite()
    {
        var (a, b) = _context.UnixPair();
        _context.Close(b);
        var registration = _poller.Register(a, 1, Interest.Writable);
        Assert.That(registration.Write("x"u8, out int written), Is.EqualTo(IoOutcome.BrokenPipe));
        Assert.That(written, Is.Zero);
        Assert.That(registration.Write("x"u8, out _), Is.EqualTo(IoOutcome.BrokenPipe), "and again: the outcome does not wear off");
    }

    [Test]
    public void AcceptReturnsThePeersAddressAsAnEndPointOrIntoAReusedSocketAddress()
    {
        var listener = Listener(new IPEndPoint(IPAddress.Loopback, 0));
        var registration = _poller.Register(listener.SafeHandle, 1, Interest.Readable);
        var first = Connect(listener);
        Assert.That(registration.Accept(out var accepted, out EndPoint? peer), Is.EqualTo(IoOutcome.Completed));
        Own(accepted!);
        Assert.That(peer, Is.EqualTo(first.LocalEndPoint));

        var address = new SocketAddress(AddressFamily.InterNetworkV6); // room for either IP family
        var second = Connect(listener);
        Assert.That(registration.Accept(address, out accepted), Is.EqualTo(IoOutcome.Completed));
        Own(accepted!);
        Assert.That(address.Family, Is.EqualTo(AddressFamily.InterNetwork));
        Assert.That(new IPEndPoint(IPAddress.Any, 0).Create(address), Is.EqualTo(second.LocalEndPoint));

        Assert.That(registration.Accept(out accepted, out peer), Is.EqualTo(IoOutcome.WouldBlock));
        Assert.That((accepted, peer), Is.EqualTo(((SafeFileHandle?)null, (EndPoint?)null)));
    }

    /// <summary>Every accept in IoMux is LibC.Accept (issue 25: one accept4): the connection comes out non-blocking (a
    /// read after a readiness report must not block the loop) and close-on-exec (a child the server starts must not
    /// hold the client's connection open), through each overload.</summary>
    [Test]
    public void AnAcceptedConnectionIsNonBlockingAndCloseOnExec()
    {
        var listener = Listener(new IPEndPoint(IPAddress.Loopback, 0));
        var registration = _poller.Register(listener.SafeHandle, 1, Interest.Readable);
        Connect(listener);
        Assert.That(registration.Accept(out var withAddress, out EndPoint? _), Is.EqualTo(IoOutcome.Completed));
        AssertNonBlockingCloseOnExec(Own(withAddress!), "Accept(out connection, out peer)");
        Connect(listener);
        Assert.That(registration.Accept(out var plain), Is.EqualTo(IoOutcome.Completed));
        AssertNonBlockingCloseOnExec(Own(plain!), "Accept(out connection)");
    }

    private static void AssertNonBlockingCloseOnExec(SafeFileHandle connection, string how)
    {
        int fd = (int)connection.DangerousGetHandle();
        Assert.That(LibC.fcntl(fd, LibC.F_GETFL, 0) & LibC.O_NONBLOCK, Is.Not.Zero, $"{how}: O_NONBLOCK");
        Assert.That(LibC.fcntl(fd, LibC.F_GETFD, 0) & LibC.FD_CLOEXEC, Is.Not.Zero, $"{how}: FD_CLOEXEC");
    }

    [Test]
    public void ASocketAddressTooSmallForThePeerIsRefusedAndTheConnectionIsClosed()
    {
        var listener = Listener(new IPEndPoint(IPAddress.Loopback, 0));
        var registration = _poller.Register(listener.SafeHandle, 1, Interest.Readable);
        var client = Connect(listener);
        SafeFileHandle? accepted = null;
        var e = Assert.Throws<ArgumentException>(() => registration.Accept(new SocketAddress(AddressFamily.InterNetwork, 4), out accepted))!;
        Assert.That(e.ParamName, Is.EqualTo("peerAddress"));
        Assert.That(accepted, Is.Null);
        client.ReceiveTimeout = 5000;
        Assert.That(client.Receive(new byte[1]), Is.Zero, "the accepted connection was closed: the client reads end of stream");
    }

    [Test]
    public void AnUnnamedUnixPeerIsAUnixEndPointWithAnEmptyPath()
    {
        var path = Path.Combine(Path.GetTempPath(), $"iomux-accept-{Guid.NewGuid():N}.sock");
        try
        {
            var listener = Listener(new UnixDomainSocketEndPoint(path));
            var registration = _poller.Register(listener.SafeHandle, 1, Interest.Readable);
            var client = Own(new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified));
            client.Connect(new UnixDomainSocketEndPoint(path));
            WaitFor(1);
            Assert.That(registration.Accept(out var accepted, out EndPoint? peer), Is.EqualTo(IoOutcome.Completed));
            Own(accepted!);
            Assert.That(peer, Is.InstanceOf<UnixDomainSocketEndPoint>());
            Assert.That(peer!.ToString(), Is.Empty);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void ABlockingSocketIsRefusedAtRegistrationWithATypedError()
    {
        // A fresh socket: Blocking = true after false would not do, .NET keeps O_NONBLOCK once set (and
        // emulates blocking calls).
        var local = Own(new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp));
        Assert.That(local.Blocking, Is.True);
        var e = Assert.Throws<BlockingSocketException>(() => _poller.Register(local.SafeHandle, 1, Interest.Readable))!;
        Assert.That(e.Descriptor, Is.EqualTo((int)local.SafeHandle.DangerousGetHandle()));
        Assert.That(e.Message, Does.Contain("Socket.Blocking = false"));
        Assert.That(_poller.RegistrationCount, Is.Zero);
        local.Blocking = false;
        Assert.That(_poller.Register(local.SafeHandle, 1, Interest.Readable).IsActive, Is.True);
    }

    [Test]
    public void TheFilesModeDecidesNotSocketBlocking()
    {
        // .NET makes a socket non-blocking underneath once an async call used it, while Socket.Blocking keeps
        // saying true (its sync calls are emulated then): such a socket is safe to register, and is accepted.
        var listener = Listener(new IPEndPoint(IPAddress.Loopback, 0));
        var client = Own(new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp));
        Assert.That(client.ConnectAsync(listener.LocalEndPoint!).Wait(TimeSpan.FromSeconds(10)), Is.True);
        Assert.That(client.Blocking, Is.True);
        Assert.That((LibC.fcntl((int)client.SafeHandle.DangerousGetHandle(), LibC.F_GETFL, 0) & LibC.O_NONBLOCK) != 0, Is.True,
            "the runtime set O_NONBLOCK for its async engine");
        Assert.That(_poller.Register(client.SafeHandle, 1, Interest.Readable).IsActive, Is.True);
    }
}
