using IoMux.Backends.EventPorts;
using IoMux.Models;
using IoMux.Interop;

namespace IoMux.Tests;

/// <summary>Event-port quirks the conformance scenarios cannot provoke through the model: port_getn failing with
/// ETIME while it did deliver events, or with EINTR while it left nget and the list untouched (illumos libc
/// event_port.c updates *nget on ETIME only), user events mixed in, stale associations, and a closed descriptor's
/// re-association (EBADFD, port_fd.c).</summary>
public sealed unsafe class EventPortsBackendTests
{
    /// <summary>The model, except that the next port_getn returns what the test scripts.</summary>
    private sealed class ScriptedPorts : IEventPortSystem
    {
        private readonly EventPortModel _model = new(TargetAbi.Illumos, PortPollBits.Illumos);
        public readonly List<(int Fd, int Events, ulong User)> Associations = [];
        public (int Rc, PortEvent[]? Events)? Next; // Events null: fail without touching nget or the list

        public PortPollBits Bits => _model.Bits;
        public OsCalls Os => _model.Os;
        public int Create() => _model.Create();
        public int Dissociate(int port, int fd) => _model.Dissociate(port, fd);
        public int Send(int port, int events, ulong user) => _model.Send(port, events, user);
        public void Close(int port) => _model.Close(port);

        public int Associate(int port, int fd, int events, ulong user)
        {
            Associations.Add((fd, events, user));
            return _model.Associate(port, fd, events, user);
        }

        public int GetN(int port, Span<PortEvent> events, ref uint nget, TimeSpan? timeout)
        {
            if (Next is not { } scripted)
                return _model.GetN(port, events, ref nget, timeout);
            Next = null;
            if (scripted.Events is null)
                return scripted.Rc;
            scripted.Events.CopyTo(events);
            nget = (uint)scripted.Events.Length;
            return scripted.Rc;
        }
    }

    [OneTimeSetUp]
    public void LinuxOnly()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Ignore("the models are built on Linux epoll/poll semantics");
    }

    private static int Pipe(List<int> fds)
    {
        LibC.CreateNonBlockingPipe(out int r, out int w);
        fds.Add(r);
        fds.Add(w);
        return r;
    }

    [Test(Description = "port_get(3C): ETIME ... or nget is updated with the number of returned port_event_t structures in list[].")]
    public void EventsDeliveredWithEtimeAreProcessed()
    {
        int errno = Errno.ETIME;
        var fds = new List<int>();
        var system = new ScriptedPorts();
        try
        {
            using var backend = new EventPortsBackend(system);
            int r = Pipe(fds);
            backend.Add(r, 77, Interest.Readable, TriggerMode.Level);
            ulong user = system.Associations.Last().User;
            system.Next = (errno, [
                new PortEvent { Source = PortSource.User, Events = 0, User = DescriptorTable.WakeData },
                new PortEvent { Source = PortSource.Fd, Events = 0x1, Object = (ulong)r, User = user },
            ]);
            var events = new PollEvent[4];
            int n = backend.Wait(events, TimeSpan.FromSeconds(1));
            Assert.That(n, Is.EqualTo(1), "the fd event counts; the user event is the wake channel's");
            Assert.That(events[0], Is.EqualTo(new PollEvent(77, Readiness.Readable)));
            Assert.That(backend.Counters.Interruptions, Is.Zero);
        }
        finally
        {
            fds.ForEach(fd => LibC.close(fd));
        }
    }

    [Test(Description = "illumos libc port_getn: on any error but ETIME it returns -1 without writing *nget: the list still holds the previous batch, which must not be reported again (libuv's sunos.c marks the first slot unfilled).")]
    public void EintrLeavesTheListUntouchedAndNothingStaleIsReported()
    {
        var fds = new List<int>();
        var system = new ScriptedPorts();
        try
        {
            using var backend = new EventPortsBackend(system);
            LibC.CreateNonBlockingPipe(out int r, out int w);
            fds.Add(r);
            fds.Add(w);
            backend.Add(r, 5, Interest.Readable, TriggerMode.Level);
            ConformanceWrite(w);
            var events = new PollEvent[4];
            Assert.That(backend.Wait(events, TimeSpan.FromSeconds(5)), Is.EqualTo(1), "the byte");
            ConformanceRead(r);
            system.Next = (Errno.EINTR, null);
            Assert.That(backend.Wait(events, TimeSpan.FromMilliseconds(50)), Is.Zero, "the previous batch is not reported again");
            Assert.That(backend.Counters.Interruptions, Is.EqualTo(1));
        }
        finally
        {
            fds.ForEach(fd => LibC.close(fd));
        }
    }

    [Test(Description = "port_associate(3C): EBADFD, the object argument is not a valid file descriptor: a level registration closed without deregistering stops being watched; later waits neither throw nor report it.")]
    public void AClosedLevelRegistrationIsDroppedAtReassociation()
    {
        var fds = new List<int>();
        var system = new ScriptedPorts();
        try
        {
            using var backend = new EventPortsBackend(system);
            LibC.CreateNonBlockingPipe(out int r, out int w);
            fds.Add(w);
            backend.Add(r, 5, Interest.Readable, TriggerMode.Level);
            ConformanceWrite(w);
            var events = new PollEvent[4];
            Assert.That(backend.Wait(events, TimeSpan.FromSeconds(5)), Is.EqualTo(1));
            LibC.close(r); // without deregistering: the re-association before the next wait gets EBADFD
            Assert.That(backend.Wait(events, TimeSpan.Zero), Is.Zero);
            Assert.That(backend.Wait(events, TimeSpan.Zero), Is.Zero);
            Assert.That(backend.Counters.ClosedWhileRegistered, Is.EqualTo(1));
            Assert.That(backend.Counters.LastClosedWhileRegistered, Is.EqualTo(r));
            backend.Delete(r);
        }
        finally
        {
            fds.ForEach(fd => LibC.close(fd));
        }
    }

    private static void ConformanceWrite(int fd)
    {
        byte one = 1;
        Assert.That(LibC.write(fd, &one, 1), Is.EqualTo((nint)1));
    }

    private static void ConformanceRead(int fd)
    {
        byte b;
        Assert.That(LibC.read(fd, &b, 1), Is.EqualTo((nint)1));
    }

    [Test]
    public void AnEventOfAReplacedAssociationIsDropped()
    {
        var fds = new List<int>();
        var system = new ScriptedPorts();
        try
        {
            using var backend = new EventPortsBackend(system);
            int r = Pipe(fds);
            backend.Add(r, 1, Interest.Readable, TriggerMode.Level);
            ulong stale = system.Associations.Last().User;
            backend.Delete(r);
            backend.Add(r, 2, Interest.Readable, TriggerMode.Level);
            Assert.That(system.Associations.Last().User, Is.Not.EqualTo(stale), "a new generation in portev_user");
            system.Next = (0, [new PortEvent { Source = PortSource.Fd, Events = 0x1, Object = (ulong)r, User = stale }]);
            Assert.That(backend.Wait(new PollEvent[4], TimeSpan.Zero), Is.Zero);
        }
        finally
        {
            fds.ForEach(fd => LibC.close(fd));
        }
    }

    [Test]
    public void LevelRegistrationsAreReassociatedInOneBatchBeforeTheNextWait()
    {
        var fds = new List<int>();
        var system = new ScriptedPorts();
        try
        {
            using var backend = new EventPortsBackend(system);
            var reads = Enumerable.Range(0, 3).Select(_ => Pipe(fds)).ToArray();
            for (int i = 0; i < reads.Length; i++)
                backend.Add(reads[i], (ulong)i, Interest.Readable, TriggerMode.Level);
            var users = system.Associations.Select(a => a.User).ToArray();
            system.Next = (0, reads.Select((fd, i) => new PortEvent { Source = PortSource.Fd, Events = 0x1, Object = (ulong)fd, User = users[i] }).ToArray());
            Assert.That(backend.Wait(new PollEvent[4], TimeSpan.Zero), Is.EqualTo(3));
            system.Associations.Clear();
            backend.Wait(new PollEvent[4], TimeSpan.Zero);
            Assert.That(system.Associations.Select(a => a.Fd), Is.EquivalentTo(reads), "every delivered level registration is watched again");
        }
        finally
        {
            fds.ForEach(fd => LibC.close(fd));
        }
    }
}
