using System.Net;
using System.Net.Sockets;
using IoMux.Interop;
using IoMux.Web;

namespace IoMux.Tests.Web;

/// <summary>SO_REUSEPORT listener groups, in a network namespace the test makes (its own tcp_migrate_req): the
/// kernel's loss of connections queued on a closed member, and the two ways IoMux avoids it.</summary>
[Category("System")]
[NonParallelizable]
public sealed class ListenerGroupTests
{
    private const int Connections = 64;

    [OneTimeSetUp]
    public void RequireNamespaces()
    {
        if (NetworkNamespace.UnavailableReason() is { } reason)
            Assert.Fail($"this test needs a network namespace: {reason}");
    }

    [Test]
    public void WithoutMigrationClosingAMemberResetsTheConnectionsQueuedOnIt()
    {
        var (served, lost) = QueueThenCloseFirstMember(migrate: false, useGroupClose: false);
        Assert.That(lost, Is.GreaterThan(0), "no connection was queued on the closed member: the test shows nothing");
        Assert.That(served + lost, Is.EqualTo(Connections));
    }

    [Test]
    public void WithTcpMigrateReqTheQueuedConnectionsMoveToAnotherMember()
    {
        var (served, lost) = QueueThenCloseFirstMember(migrate: true, useGroupClose: true);
        Assert.That(lost, Is.EqualTo(0));
        Assert.That(served, Is.EqualTo(Connections));
    }

    [Test]
    public void WithoutMigrationTheGroupDrainsTheMemberBeforeClosingIt()
    {
        var (served, lost) = QueueThenCloseFirstMember(migrate: false, useGroupClose: true);
        Assert.That(lost, Is.EqualTo(0));
        Assert.That(served, Is.EqualTo(Connections));
    }

    /// <summary>Connects <see cref="Connections"/> clients to a two-member group, closes member 0, accepts
    /// everything member 1 has, and checks which clients are really served (a byte each way).</summary>
    private static (int Served, int Lost) QueueThenCloseFirstMember(bool migrate, bool useGroupClose) => NetworkNamespace.Run(() =>
    {
        NetworkNamespace.SetSysctl("net.ipv4.tcp_migrate_req", migrate ? "1" : "0");
        Assert.That(ListenerGroup.MigrationEnabled, Is.EqualTo(migrate));
        using var group = ListenerGroup.Bind(new IPEndPoint(IPAddress.Loopback, 0), size: 2);
        var clients = new List<Socket>();
        var accepted = new List<int>();
        try
        {
            for (int i = 0; i < Connections; i++)
            {
                var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                client.Connect(group.Endpoint); // completes in the kernel; nobody has accepted yet
                clients.Add(client);
            }
            if (useGroupClose)
            {
                accepted.AddRange(group.Close(0));
            }
            else
            {
                LibC.close(group.Listeners[0]); // what a server does without either answer
            }
            Thread.Sleep(100); // lets the kernel reset (or migrate) the closed member's queue
            for (int fd; (fd = LibC.Accept(group.Listeners[1])) >= 0;)
                accepted.Add(fd);

            int served = 0;
            foreach (int fd in accepted)
                Assert.That(WriteByte(fd), Is.True);
            foreach (var client in clients)
            {
                try
                {
                    client.ReceiveTimeout = 2000;
                    var one = new byte[1];
                    if (client.Receive(one) == 1)
                        served++;
                }
                catch (SocketException)
                {
                    // ECONNRESET: the connection died with its listener.
                }
            }
            return (served, Connections - served);
        }
        finally
        {
            foreach (int fd in accepted)
                LibC.CloseQuietly(fd);
            foreach (var client in clients)
                client.Dispose();
        }
    });

    private static unsafe bool WriteByte(int fd)
    {
        byte b = 7;
        return LibC.write(fd, &b, 1) == 1;
    }
}

/// <summary>A listener group does not join what already listens on its address: SO_REUSEPORT alone would let a
/// second server bind the port of the first (same user) and take a share of its connections without a word.</summary>
[Category("System")]
public sealed class ListenerGroupExclusiveTests
{
    [Test]
    public void ASecondGroupOnTheSamePortIsRefusedWithEaddrinuse()
    {
        using var first = ListenerGroup.Bind(new IPEndPoint(IPAddress.Loopback, 0), size: 2);
        var refused = Assert.Throws<PosixException>(() => ListenerGroup.Bind(first.Endpoint, size: 2));
        Assert.That(refused!.ErrorName, Is.EqualTo("EADDRINUSE"));
        Assert.That(refused.Message, Does.Contain(first.Endpoint.ToString()));
    }

    [Test]
    public void AListenerWithoutReusePortIsRefusedToo()
    {
        using var other = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        other.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        other.Listen();
        var refused = Assert.Throws<PosixException>(() => ListenerGroup.Bind((IPEndPoint)other.LocalEndPoint!, size: 1));
        Assert.That(refused!.ErrorName, Is.EqualTo("EADDRINUSE"));
    }

    /// <summary>Once a group is closed its port can be bound again at once, even with a connection the server
    /// closed first still in TIME_WAIT on it (what a restart leaves behind).</summary>
    [Test]
    public void AFreedPortCanBeBoundAgainDespiteTimeWait()
    {
        IPEndPoint endpoint;
        using (var first = ListenerGroup.Bind(new IPEndPoint(IPAddress.Loopback, 0), size: 2))
        {
            endpoint = first.Endpoint;
            using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            client.Connect(endpoint);
            int accepted = -1;
            for (int attempt = 0; attempt < 200 && accepted < 0; attempt++)
            {
                accepted = Math.Max(LibC.Accept(first.Listeners[0]), LibC.Accept(first.Listeners[1]));
                if (accepted < 0)
                    Thread.Sleep(10);
            }
            Assert.That(accepted, Is.GreaterThanOrEqualTo(0), "the connection reached neither member");
            LibC.close(accepted); // the server closes first: its side of the port goes to TIME_WAIT
        }
        using var second = ListenerGroup.Bind(endpoint, size: 3);
        Assert.That(second.Endpoint, Is.EqualTo(endpoint));
        Assert.That(second.Listeners, Has.Count.EqualTo(3).And.All.GreaterThanOrEqualTo(0));
    }
}
