using IoMux.Backends.Kqueue;
using IoMux.Models;
using IoMux.Interop;
using static IoMux.Models.KqueueAbi;

namespace IoMux.Tests;

/// <summary>
/// Pins each behaviour of the kqueue model to the kqueue(2) sentence or kernel function it reproduces (quoted or
/// closely paraphrased; docs/research/kqueue-ports-constants.md cites the sources). The conformance suite runs the
/// kqueue backend over this model, so the model must be right before the suite means anything. Most tests play
/// FreeBSD 14 (read -1, write -2, user -11); the per-OS rules are tested on each profile.
/// </summary>
public sealed unsafe class KqueueModelTests
{
    private KqueueModel _model = null!;
    private int _kq;
    private readonly List<int> _fds = [];
    private static readonly KqueueAbi Os = KqueueAbi.FreeBsd14;
    private static readonly (short Read, short Write, short User) F = (Os.Read, Os.Write, Os.User!.Value);

    [OneTimeSetUp]
    public void LinuxOnly()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Ignore("the models are built on Linux epoll/poll semantics");
    }

    [SetUp]
    public void Create()
    {
        _model = New(Os);
        KqueueModel.Refused.Clear();
        _kq = _model.Create();
    }

    [TearDown]
    public void Close()
    {
        _model.Close(_kq);
        foreach (var fd in _fds)
            LibC.close(fd);
        _fds.Clear();
    }

    private (int A, int B) Pair()
    {
        int* fds = stackalloc int[2];
        Assert.That(LibC.socketpair(1, 1, 0, fds), Is.Zero);
        LibC.SetNonBlockingCloseOnExec(fds[0]);
        LibC.SetNonBlockingCloseOnExec(fds[1]);
        _fds.Add(fds[0]);
        _fds.Add(fds[1]);
        return (fds[0], fds[1]);
    }

    private (int Read, int Write) Pipe()
    {
        LibC.CreateNonBlockingPipe(out int r, out int w);
        _fds.Add(r);
        _fds.Add(w);
        return (r, w);
    }

    private static void Write(int fd, int count)
    {
        var bytes = new byte[count];
        fixed (byte* p = bytes)
            Assert.That(LibC.write(fd, p, (nuint)count), Is.EqualTo((nint)count));
    }

    private static void Read(int fd, int count)
    {
        var bytes = new byte[count];
        fixed (byte* p = bytes)
            Assert.That(LibC.read(fd, p, (nuint)count), Is.EqualTo((nint)count));
    }

    private KEvent[] Change(params KEvent[] changes)
    {
        var receipts = new KEvent[changes.Length];
        int n = _model.Kevent(_kq, changes, receipts, TimeSpan.Zero);
        Assert.That(n, Is.GreaterThanOrEqualTo(0));
        return receipts[..n];
    }

    private KEvent[] Poll(TimeSpan? timeout = null)
    {
        var events = new KEvent[8];
        int n = _model.Kevent(_kq, [], events, timeout ?? TimeSpan.Zero);
        Assert.That(n, Is.GreaterThanOrEqualTo(0));
        return events[..n];
    }

    private static KEvent Ev(int fd, short filter, ushort flags, ulong udata = 0, uint fflags = 0) =>
        new() { Ident = (ulong)fd, Filter = filter, Flags = flags, UData = udata, FFlags = fflags };

    [Test(Description = "EV_RECEIPT: it forces EV_ERROR to always be returned; when a filter is successfully added the data field will be zero.")]
    public void ReceiptsReportEachChange()
    {
        var (a, _) = Pair();
        var receipt = Change(Ev(a, F.Read, EV_ADD | EV_RECEIPT, udata: 5)).Single();
        Assert.That((receipt.Flags & EV_ERROR, receipt.Data, receipt.UData), Is.EqualTo((EV_ERROR, 0L, 5UL)));
    }

    [Test(Description = "ENOENT: the event could not be found to be modified or deleted. EBADF: the specified descriptor is invalid.")]
    public void ChangeErrorsComeBackAsEvErrorEntries()
    {
        var (a, _) = Pair();
        Assert.That(Change(Ev(a, F.Read, EV_DELETE | EV_RECEIPT)).Single().Data, Is.EqualTo(Errno.ENOENT));
        var (r, w) = Pipe();
        LibC.close(w);
        _fds.Remove(w);
        Assert.That(Change(Ev(w, F.Write, EV_ADD | EV_RECEIPT)).Single().Data, Is.EqualTo(Errno.EBADF));
        GC.KeepAlive(r);
    }

    [Test(Description = "EVFILT_READ, sockets: data contains the number of bytes of protocol data available to read; without EV_CLEAR the event is returned while the condition holds.")]
    public void LevelReadReportsTheBufferedByteCountUntilDrained()
    {
        var (a, b) = Pair();
        Change(Ev(a, F.Read, EV_ADD | EV_RECEIPT, udata: 1));
        Write(b, 7);
        Assert.That(Poll().Single().Data, Is.EqualTo(7));
        Assert.That(Poll().Single().Data, Is.EqualTo(7), "still there: reported again");
        Read(a, 7);
        Assert.That(Poll(), Is.Empty);
    }

    [Test(Description = "EV_CLEAR: after the event is retrieved by the user, its state is reset (reported again only on new activity).")]
    public void ClearReportsTransitionsOnly()
    {
        var (a, b) = Pair();
        Change(Ev(a, F.Read, EV_ADD | EV_CLEAR | EV_RECEIPT));
        Write(b, 3);
        Assert.That(Poll(), Has.Length.EqualTo(1));
        Assert.That(Poll(), Is.Empty, "nothing new");
        Write(b, 2);
        Assert.That(Poll().Single().Data, Is.EqualTo(5), "new data: reported again, with everything buffered");
    }

    [Test(Description = "EV_ONESHOT: causes the event to return only the first occurrence of the filter being triggered; after the user retrieves the event from the kqueue, it is deleted.")]
    public void OneshotIsDeletedAfterDelivery()
    {
        var (a, b) = Pair();
        Change(Ev(a, F.Read, EV_ADD | EV_ONESHOT | EV_RECEIPT));
        Write(b, 1);
        Assert.That(Poll(), Has.Length.EqualTo(1));
        Assert.That(Poll(), Is.Empty);
        Assert.That(Change(Ev(a, F.Read, EV_DELETE | EV_RECEIPT)).Single().Data, Is.EqualTo(Errno.ENOENT), "deleted");
    }

    [Test(Description = "EV_DISPATCH: disable the event source immediately after delivery of an event. EV_ENABLE: permit kevent() to return the event if it is triggered.")]
    public void DispatchDisablesUntilEnabled()
    {
        var (a, b) = Pair();
        Change(Ev(a, F.Read, EV_ADD | EV_DISPATCH | EV_RECEIPT));
        Write(b, 1);
        Assert.That(Poll(), Has.Length.EqualTo(1));
        Assert.That(Poll(), Is.Empty, "disabled, though data remains");
        Change(Ev(a, F.Read, EV_ENABLE | EV_RECEIPT));
        Assert.That(Poll(), Has.Length.EqualTo(1), "enabled again: still readable");
    }

    [Test(Description = "EV_DISABLE: disable the event so kevent() will not return it; the filter itself is not disabled.")]
    public void DisabledKnotesAreSilent()
    {
        var (a, b) = Pair();
        Change(Ev(a, F.Read, EV_ADD | EV_RECEIPT), Ev(a, F.Read, EV_DISABLE | EV_RECEIPT));
        Write(b, 1);
        Assert.That(Poll(), Is.Empty);
    }

    [Test(Description = "EVFILT_READ, sockets: if the read direction of the socket has shutdown, the filter also sets EV_EOF in flags (data still counts what is buffered).")]
    public void PeerShutdownSetsEofOnTheReadFilterWithDataStillCounted()
    {
        var (a, b) = Pair();
        Change(Ev(a, F.Read, EV_ADD | EV_RECEIPT));
        Write(b, 4);
        LibC.shutdown(b, 1);
        var e = Poll().Single();
        Assert.That((e.Flags & EV_EOF, e.Data), Is.EqualTo((EV_EOF, 4L)));
    }

    [Test(Description = "EVFILT_READ, fifos and pipes: when the last writer disconnects, the filter will set EV_EOF. EVFILT_WRITE: the filter will set EV_EOF when the reader disconnects.")]
    public void PipeEndsSeeEofWhenTheOtherEndCloses()
    {
        var (r, w) = Pipe();
        var (r2, w2) = Pipe();
        Change(Ev(r, F.Read, EV_ADD | EV_RECEIPT), Ev(w2, F.Write, EV_ADD | EV_RECEIPT));
        LibC.close(w);
        _fds.Remove(w);
        LibC.close(r2);
        _fds.Remove(r2);
        var events = Poll();
        Assert.That(events.Single(e => e.Filter == F.Read).Flags & EV_EOF, Is.EqualTo(EV_EOF));
        Assert.That(events.Single(e => e.Filter == F.Write).Flags & EV_EOF, Is.EqualTo(EV_EOF));
    }

    [Test(Description = "FreeBSD filt_sowrite: a local shutdown(SHUT_WR) sets EV_EOF on the write filter (SBS_CANTSENDMORE) — not a peer hangup, and the read filter stays quiet.")]
    public void LocalShutWrIsEofOnTheWriteFilterOnly()
    {
        var (a, _) = Pair();
        Change(Ev(a, F.Read, EV_ADD | EV_RECEIPT), Ev(a, F.Write, EV_ADD | EV_RECEIPT));
        LibC.shutdown(a, 1);
        var events = Poll();
        Assert.That(events.Single().Filter, Is.EqualTo(F.Write));
        Assert.That(events.Single().Flags & EV_EOF, Is.EqualTo(EV_EOF));
    }

    [Test(Description = "FreeBSD filt_soread/filt_sowrite: a socket that requires a connection and has none is neither readable nor writable (Linux's POLLHUP for it is not reported).")]
    public void UnconnectedSocketsReportNothing()
    {
        using var s = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        int fd = (int)s.Handle;
        Change(Ev(fd, F.Read, EV_ADD | EV_RECEIPT), Ev(fd, F.Write, EV_ADD | EV_RECEIPT));
        Assert.That(Poll(), Is.Empty);
        Change(Ev(fd, F.Read, EV_DELETE | EV_RECEIPT), Ev(fd, F.Write, EV_DELETE | EV_RECEIPT));
    }

    [Test(Description = "FreeBSD filt_sowrite checks SBS_CANTSENDMORE before PR_CONNREQUIRED: a TCP connection reset by its peer (soisdisconnected) is writable with EV_EOF, also once a read took the error, although it has no peer any more.")]
    public void AResetConnectionIsWritableWithEof()
    {
        using var listener = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        listener.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        listener.Listen(1);
        using var client = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        client.Connect(listener.LocalEndPoint!);
        using (var peer = listener.Accept())
        {
            peer.LingerState = new System.Net.Sockets.LingerOption(true, 0);
        } // close with SO_LINGER 0: RST
        int fd = (int)client.Handle;
        Assert.That(client.Poll(5_000_000, System.Net.Sockets.SelectMode.SelectRead), Is.True, "the RST did not arrive within 5 s");
        Change(Ev(fd, F.Write, EV_ADD | EV_RECEIPT));
        Assert.That(Poll().Single().Flags & EV_EOF, Is.EqualTo(EV_EOF), "with the error pending");
        var buffer = new byte[1];
        fixed (byte* p = buffer)
            Assert.That(LibC.read(fd, p, 1), Is.EqualTo((nint)(-1)), "the read takes the ECONNRESET");
        Assert.That(Poll().Single().Flags & EV_EOF, Is.EqualTo(EV_EOF), "after the error was read");
        Change(Ev(fd, F.Write, EV_DELETE | EV_RECEIPT));
    }

    [Test(Description = "EVFILT_USER, NOTE_TRIGGER: cause the event to be triggered — also for a kevent() blocked in another thread; with EV_CLEAR the trigger is reset once retrieved.")]
    public void UserTriggerWakesABlockedKevent()
    {
        Change(new KEvent { Ident = 9, Filter = F.User, Flags = EV_ADD | EV_CLEAR | EV_RECEIPT, UData = 3 });
        var waiter = Task.Run(() => Poll(TimeSpan.FromSeconds(5)));
        Thread.Sleep(30);
        Change(new KEvent { Ident = 9, Filter = F.User, FFlags = NOTE_TRIGGER, Flags = EV_RECEIPT });
        Assert.That(waiter.Wait(TimeSpan.FromSeconds(5)), Is.True);
        Assert.That(waiter.Result.Single().UData, Is.EqualTo(3UL));
        Assert.That(Poll(), Is.Empty, "EV_CLEAR reset the trigger");
    }

    [Test(Description = "Events which are attached to file descriptors are automatically deleted on the last close of the descriptor.")]
    public void CloseRemovesTheDescriptorsEvents()
    {
        var (a, b) = Pair();
        Change(Ev(a, F.Read, EV_ADD | EV_RECEIPT));
        Write(b, 1);
        LibC.close(a);
        _fds.Remove(a);
        Assert.That(Poll(), Is.Empty);
    }

    [Test(Description = "FreeBSD kern_event.c kqueue_fo_find: a filter outside -1..-EVFILT_SYSCOUNT is EINVAL, checked before the flags, so EV_DELETE too (the mistake an outside kqueue found: FreeBSD has no EVFILT_EXCEPT, -15).")]
    public void UnknownFiltersAreEinvalEvenForDelete()
    {
        var (a, _) = Pair();
        Assert.That(Change(Ev(a, -15, EV_ADD | EV_RECEIPT)).Single().Data, Is.EqualTo(Errno.EINVAL));
        Assert.That(Change(Ev(a, -15, EV_DELETE | EV_RECEIPT)).Single().Data, Is.EqualTo(Errno.EINVAL));
        Assert.That(KqueueModel.Refused, Has.Count.EqualTo(2), "both refusals are recorded for the conformance suite");
    }

    [TestCaseSource(nameof(Profiles))]
    public void EachProfileAcceptsItsOwnFiltersAndRefusesTheOthers(string name)
    {
        var os = KqueueAbi.All.Single(p => p.Name == name);
        var model = New(os);
        int kq = model.Create();
        try
        {
            var (a, _) = Pair();
            int Add(short filter, uint fflags = 0)
            {
                var receipts = new KEvent[1];
                Assert.That(model.Kevent(kq, [Ev(a, filter, EV_ADD | EV_RECEIPT, fflags: fflags)], receipts, TimeSpan.Zero), Is.EqualTo(1));
                return (int)receipts[0].Data;
            }
            Assert.That(Add(os.Read), Is.Zero, "EVFILT_READ");
            Assert.That(Add(os.Write), Is.Zero, "EVFILT_WRITE");
            if (os.Except is { } except)
                Assert.That(Add(except, os.NoteOob), Is.Zero, "EVFILT_EXCEPT");
            // FreeBSD's and libkqueue's -15 (none, or a jail descriptor filter), and NetBSD's -1 (its filters are positive).
            short foreign = os.PositiveFilters ? (short)-1 : (short)-15;
            if (os.Except != foreign)
                Assert.That(Add(foreign), Is.EqualTo(Errno.EINVAL), $"filter {foreign} on {os.Name}");
        }
        finally
        {
            model.Close(kq);
        }
    }

    public static IEnumerable<string> Profiles => KqueueAbi.All.Select(p => p.Name);

    private static KqueueModel New(KqueueAbi abi) => new(abi, ModelTargets.BackendTableFor(abi));

    [Test(Description = "FreeBSD knote_fdclose: close(2) removes the descriptor's knotes even while a dup keeps the file open; EV_DELETE afterwards is EBADF (fget fails before the lookup).")]
    public void CloseRemovesKnotesEvenWithADupAlive()
    {
        var (a, b) = Pair();
        int dup = LibC.dup(a);
        _fds.Add(dup);
        Change(Ev(a, F.Read, EV_ADD | EV_RECEIPT));
        LibC.close(a);
        _fds.Remove(a);
        Write(b, 1);
        Assert.That(Poll(), Is.Empty, "the knote went with the close, though the file lives on in the dup");
        Assert.That(Change(Ev(a, F.Read, EV_DELETE | EV_RECEIPT)).Single().Data, Is.EqualTo(Errno.EBADF));
        Assert.That(LibC.dup2(dup, a), Is.EqualTo(a));
        _fds.Add(a);
        Assert.That(Change(Ev(a, F.Read, EV_ADD | EV_RECEIPT, udata: 8)).Single().Data, Is.Zero, "the number can be watched again");
        Assert.That(Poll().Single().UData, Is.EqualTo(8UL));
    }

    [Test(Description = "FreeBSD kqueue_register: EV_ADD of an existing knote updates fflags and udata but keeps EV_CLEAR/EV_ONESHOT/EV_DISPATCH from its creation.")]
    public void ReAddingKeepsTheModeItWasCreatedWith()
    {
        var (a, b) = Pair();
        Change(Ev(a, F.Read, EV_ADD | EV_DISPATCH | EV_RECEIPT));
        Change(Ev(a, F.Read, EV_ADD | EV_ENABLE | EV_RECEIPT));
        Write(b, 1);
        Assert.That(Poll(), Has.Length.EqualTo(1));
        Assert.That(Poll(), Is.Empty, "still EV_DISPATCH: disabled after the delivery, although the data is there");
    }

    [Test(Description = "FreeBSD filt_sowrite: only a protocol that needs a connection (PR_CONNREQUIRED) withholds writability while unconnected; an unconnected UDP socket is writable.")]
    public void UnconnectedUdpIsWritable()
    {
        using var s = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp);
        int fd = (int)s.Handle;
        Change(Ev(fd, F.Write, EV_ADD | EV_RECEIPT));
        Assert.That(Poll().Single().Filter, Is.EqualTo(F.Write));
        Change(Ev(fd, F.Write, EV_DELETE | EV_RECEIPT));
    }

    [Test(Description = "FreeBSD kqueue_kevent sets an error entry's flags to EV_ERROR alone; xnu kevent_register adds EV_ERROR to the change's flags.")]
    public void ErrorEntriesFollowTheOs()
    {
        var (a, _) = Pair();
        Assert.That(Change(Ev(a, F.Read, EV_DELETE | EV_RECEIPT)).Single().Flags, Is.EqualTo(EV_ERROR));
        var mac = New(KqueueAbi.MacOS);
        int kq = mac.Create();
        var receipts = new KEvent[1];
        mac.Kevent(kq, [Ev(a, KqueueAbi.MacOS.Read, EV_DELETE | EV_RECEIPT)], receipts, TimeSpan.Zero);
        mac.Close(kq);
        Assert.That(receipts[0].Flags, Is.EqualTo(EV_DELETE | EV_RECEIPT | EV_ERROR));
    }

    [Test(Description = "kevent(2): nevents determines the size of eventlist; the call returns up to nevents ready events, all of one filter included (the model once stopped at 64 per filter per wait).")]
    public void OneWaitFillsTheWholeEventList()
    {
        const int Sockets = 70;
        var idents = new HashSet<ulong>();
        for (int i = 0; i < Sockets; i++)
        {
            var (a, _) = Pair();
            Change(Ev(a, F.Write, EV_ADD | EV_RECEIPT, udata: (ulong)a));
            idents.Add((ulong)a);
        }
        var events = new KEvent[128];
        int n = _model.Kevent(_kq, [], events, TimeSpan.Zero);
        Assert.That(n, Is.EqualTo(Sockets), "every writable socket in one wait");
        Assert.That(events[..n].Select(e => e.Ident), Is.EquivalentTo(idents), "each once");
        var fewer = new KEvent[50];
        Assert.That(_model.Kevent(_kq, [], fewer, TimeSpan.Zero), Is.EqualTo(50), "nevents caps it");
    }
}
