using IoMux.Backends.EventPorts;
using IoMux.Models;
using IoMux.Interop;

namespace IoMux.Tests;

/// <summary>
/// Pins each behaviour of the event-port model to the manual page sentence it reproduces (illumos/Solaris
/// port_associate(3C), port_get(3C), port_send(3C); quoted or closely paraphrased). The conformance suite runs
/// the event-ports backend over this model, so the model must be right before the suite means anything.
/// </summary>
public sealed unsafe class EventPortModelTests
{
    // The model answers in illumos's numbers (its own table, TargetAbi.Illumos), not this host's.
    private static readonly (int Enoent, int Eintr, int Ebadf, int Einval, int Enotconn, int Etime, int Ebadfd, int Enotty, int Enoprotoopt, int Enotsock) E = TargetAbi.Illumos.Errnos;

    private EventPortModel _model = null!;
    private int _port;
    private readonly List<int> _fds = [];

    [OneTimeSetUp]
    public void LinuxOnly()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Ignore("the models are built on Linux epoll/poll semantics");
    }

    [SetUp]
    public void CreatePort()
    {
        _model = new EventPortModel(TargetAbi.Illumos, IoMux.Backends.EventPorts.PortPollBits.Illumos);
        _port = _model.Create();
        Assert.That(_port, Is.GreaterThanOrEqualTo(0));
    }

    [TearDown]
    public void ClosePort()
    {
        _model.Close(_port);
        foreach (var fd in _fds)
            LibC.close(fd);
        _fds.Clear();
    }

    private (int Read, int Write) Pipe()
    {
        LibC.CreateNonBlockingPipe(out int r, out int w);
        _fds.Add(r);
        _fds.Add(w);
        return (r, w);
    }

    private static void WriteByte(int fd)
    {
        byte b = 1;
        Assert.That(LibC.write(fd, &b, 1), Is.EqualTo((nint)1));
    }

    private (int Rc, PortEvent[] Events) GetN(uint nget, TimeSpan? timeout, int max = 8)
    {
        var events = new PortEvent[max];
        int rc = _model.GetN(_port, events, ref nget, timeout);
        return (rc, events[..(int)nget]);
    }

    private const int PollIn = 0x1, PollOut = 0x4, PollHup = 0x10;

    [Test(Description = "illumos so_poll: \"In sockets the errors are represented as input/output events\": a socket with a pending error (a reset) reports POLLIN|POLLOUT as requested and no POLLERR, POLLHUP or POLLRDHUP (sockcommon_sops.c @0250c53a).")]
    public void ASocketErrorIsReportedAsInputAndOutputOnly()
    {
        using var listener = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        listener.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        listener.Listen(1);
        using var client = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        client.Connect(listener.LocalEndPoint!);
        using (var peer = listener.Accept())
            peer.LingerState = new System.Net.Sockets.LingerOption(true, 0); // close with SO_LINGER 0: RST
        int fd = (int)client.Handle;
        Assert.That(client.Poll(5_000_000, System.Net.Sockets.SelectMode.SelectRead), Is.True, "the RST did not arrive within 5 s");
        const int RdHup = 0x4000;
        Assert.That(_model.Associate(_port, fd, PollIn | PollOut | RdHup, 7), Is.Zero);
        var (rc, events) = GetN(1, TimeSpan.FromSeconds(5));
        Assert.That(rc, Is.Zero);
        Assert.That(events.Single().Events, Is.EqualTo(PollIn | PollOut), "only the requested input/output bits");
        Assert.That(_model.Associate(_port, fd, PollIn, 7), Is.Zero);
        (rc, events) = GetN(1, TimeSpan.FromSeconds(5));
        Assert.That(events.Single().Events, Is.EqualTo(PollIn), "as requested: no POLLOUT when only POLLIN was asked for");
    }

    [Test(Description = "port_associate(3C): once an event for a PORT_SOURCE_FD object is retrieved, the object is no longer associated with the port; it must be re-associated to be watched again.")]
    public void RetrievingAnEventDissociatesTheDescriptor()
    {
        var (r, w) = Pipe();
        Assert.That(_model.Associate(_port, r, PollIn, 42), Is.Zero);
        WriteByte(w);
        var (rc, events) = GetN(1, TimeSpan.Zero);
        Assert.That(rc, Is.Zero);
        Assert.That(events.Single(), Is.EqualTo(new PortEvent { Events = PollIn, Source = PortSource.Fd, Object = (ulong)r, User = 42 }));
        (rc, events) = GetN(1, TimeSpan.Zero);
        Assert.That((rc, events.Length), Is.EqualTo((E.Etime, 0)), "still readable, but no longer associated");
        Assert.That(_model.Dissociate(_port, r), Is.EqualTo(E.Enoent), "port_dissociate: ENOENT, the object is not associated");
    }

    [Test(Description = "port_associate(3C): at most one event notification is generated per associated file descriptor; a descriptor that is readable and writable yields one event with both bits.")]
    public void OneEventPerDescriptorWithEveryFiredBit()
    {
        int* pair = stackalloc int[2];
        Assert.That(LibC.socketpair(1, 1, 0, pair), Is.Zero);
        _fds.Add(pair[0]);
        _fds.Add(pair[1]);
        WriteByte(pair[1]);
        _model.Associate(_port, pair[0], PollIn | PollOut, 7);
        var (_, events) = GetN(1, TimeSpan.Zero);
        Assert.That(events.Single().Events, Is.EqualTo(PollIn | PollOut));
    }

    [Test(Description = "poll(2), which port_associate(3C) takes its event types from: POLLHUP is reported whether or not it was requested.")]
    public void HangupIsReportedUnrequested()
    {
        var (r, w) = Pipe();
        _model.Associate(_port, r, PollIn, 1);
        LibC.close(w);
        _fds.Remove(w);
        var (_, events) = GetN(1, TimeSpan.Zero);
        Assert.That(events.Single().Events & PollHup, Is.EqualTo(PollHup));
    }

    [Test(Description = "port_associate(3C): associating an object that is already associated replaces its events and user value.")]
    public void ReassociationReplacesEventsAndUser()
    {
        var (r, w) = Pipe();
        _model.Associate(_port, w, PollIn, 1);
        _model.Associate(_port, w, PollOut, 2);
        var (_, events) = GetN(1, TimeSpan.Zero);
        Assert.That((events.Single().Events, events.Single().User), Is.EqualTo((PollOut, 2UL)));
        GC.KeepAlive(r);
    }

    [Test(Description = "port_get(3C): the nget argument points to the desired number of events; if the timeout elapses first, port_getn() fails with ETIME and nget is updated to the number of events actually retrieved into list.")]
    public void GetnWaitsForNgetAndReportsPartialRetrievalWithEtime()
    {
        var (r1, w1) = Pipe();
        var (r2, _) = Pipe();
        _model.Associate(_port, r1, PollIn, 1);
        _model.Associate(_port, r2, PollIn, 2);
        WriteByte(w1);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var (rc, events) = GetN(2, TimeSpan.FromMilliseconds(50));
        Assert.That(rc, Is.EqualTo(E.Etime));
        Assert.That(events.Single().User, Is.EqualTo(1UL), "the event retrieved before the timeout is returned with ETIME");
        Assert.That(clock.Elapsed, Is.GreaterThanOrEqualTo(TimeSpan.FromMilliseconds(50)), "it waited for the second event until the timeout");
    }

    [Test(Description = "port_get(3C): the max parameter specifies the maximum number of events that can be returned in list.")]
    public void GetnReturnsAtMostMax()
    {
        for (int i = 0; i < 3; i++)
        {
            var (r, w) = Pipe();
            WriteByte(w);
            _model.Associate(_port, r, PollIn, (ulong)i);
        }
        var (rc, events) = GetN(1, TimeSpan.Zero, max: 2);
        Assert.That((rc, events.Length), Is.EqualTo((0, 2)));
        (rc, events) = GetN(1, TimeSpan.Zero, max: 2);
        Assert.That((rc, events.Length), Is.EqualTo((0, 1)), "the third stayed associated and is delivered next");
    }

    [Test(Description = "port_send(3C): port_send() submits a user-defined event to a port; it is retrieved with portev_source PORT_SOURCE_USER and the given events and user value, and wakes a blocked port_getn().")]
    public void SendQueuesUserEventsAndWakesAWaiter()
    {
        var waiter = Task.Run(() => GetN(1, TimeSpan.FromSeconds(5)));
        Thread.Sleep(30);
        Assert.That(_model.Send(_port, 5, 99), Is.Zero);
        Assert.That(waiter.Wait(TimeSpan.FromSeconds(5)), Is.True);
        var (rc, events) = waiter.Result;
        Assert.That(rc, Is.Zero);
        Assert.That(events.Single(), Is.EqualTo(new PortEvent { Events = 5, Source = PortSource.User, User = 99 }));
    }

    [Test(Description = "port_get(3C): with a NULL timeout port_get blocks until an event is available; an association made by another thread meanwhile counts.")]
    public void AnAssociationFromAnotherThreadReachesABlockedGetn()
    {
        var (r, w) = Pipe();
        WriteByte(w);
        var waiter = Task.Run(() => GetN(1, null));
        Thread.Sleep(30);
        _model.Associate(_port, r, PollIn, 3);
        Assert.That(waiter.Wait(TimeSpan.FromSeconds(5)), Is.True);
        Assert.That(waiter.Result.Events.Single().User, Is.EqualTo(3UL));
    }

    [Test(Description = "port_associate(3C): EBADFD, the object argument is not a valid file descriptor (port_fd.c: getf(fd) == NULL gives EBADFD; EBADF is for an invalid port); and a descriptor closed while associated is dissociated without an event.")]
    public void ClosedDescriptorsAreRefusedAndDropped()
    {
        var (r, _) = Pipe();
        _model.Associate(_port, r, PollIn, 1);
        LibC.close(r);
        _fds.Remove(r);
        var (rc, events) = GetN(1, TimeSpan.Zero);
        Assert.That((rc, events.Length), Is.EqualTo((E.Etime, 0)));
        Assert.That(_model.Associate(_port, r, PollIn, 1), Is.EqualTo(E.Ebadfd));
        Assert.That(_model.Dissociate(_port, r), Is.EqualTo(E.Ebadfd), "port_dissociate of a closed descriptor");
        var (open, _) = Pipe();
        Assert.That(_model.Associate(_port + 1000, open, PollIn, 1), Is.EqualTo(E.Ebadf), "an invalid port");
    }

    [Test(Description = "illumos sys/poll.h defines POLLRDHUP (0x4000) and the model reports it when requested; the Solaris model has none, so the backend derives read hangup there.")]
    public void ReadHangupExistsOnlyInTheIllumosModel()
    {
        Assert.That(_model.Target.PollRdHup, Is.EqualTo(0x4000));
        Assert.That(TargetAbi.Solaris.PollRdHup, Is.Zero);
        int* pair = stackalloc int[2];
        Assert.That(LibC.socketpair(1, 1, 0, pair), Is.Zero);
        _fds.Add(pair[0]);
        LibC.shutdown(pair[1], 1); // SHUT_WR
        _fds.Add(pair[1]);
        _model.Associate(_port, pair[0], PollIn | 0x4000, 1);
        var (_, events) = GetN(1, TimeSpan.Zero);
        Assert.That(events.Single().Events & 0x4000, Is.EqualTo(0x4000));
    }

    [Test(Description = "port_associate(3C), port_send(3C), port_get(3C): EBADF, the port identifier is not valid — in every call, and each such refusal is recorded for the conformance suite (the model once recorded it in port_associate only).")]
    public void AnInvalidPortIsEbadfAndRecordedInEveryCall()
    {
        var (r, _) = Pipe();
        int bad = _port + 1000;
        EventPortModel.Refused.Clear();
        uint nget = 1;
        var list = new PortEvent[1];
        Assert.That(_model.Associate(bad, r, PollIn, 1), Is.EqualTo(E.Ebadf), "port_associate");
        Assert.That(_model.Dissociate(bad, r), Is.EqualTo(E.Ebadf), "port_dissociate");
        Assert.That(_model.Send(bad, 0, 1), Is.EqualTo(E.Ebadf), "port_send");
        Assert.That(_model.GetN(bad, list, ref nget, TimeSpan.Zero), Is.EqualTo(E.Ebadf), "port_getn");
        Assert.That(EventPortModel.Refused.Select(x => x.Split(" ")[0]).ToArray(),
            Is.EqualTo(new[] { "port_associate", "port_dissociate", "port_send", "port_getn" }));
        EventPortModel.Refused.Clear();
    }
}
