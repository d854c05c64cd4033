using System.Text;
using IoMux.Web.Http;

namespace IoMux.Tests.Web;

/// <summary>The pieces behind the static server's Range and conditional answers, on their own: the byte-range
/// parser (RFC 9110 §14.1.2), the validators and the order of the preconditions (§13.2.2), and where the request
/// parser finds the fields they read.</summary>
public sealed class StaticValidatorsTests
{
    [TestCase("bytes=0-0", 10, 0, 0)]
    [TestCase("bytes=0-", 10, 0, 9)]
    [TestCase("bytes=3-5", 10, 3, 5)]
    [TestCase("bytes=3-50", 10, 3, 9)]
    [TestCase("bytes=-3", 10, 7, 9)]
    [TestCase("bytes=-30", 10, 0, 9)]
    [TestCase("Bytes = 9-9", 10, 9, 9)]
    public void ASatisfiableRangeIsResolvedAgainstTheLength(string field, long length, long first, long last)
    {
        var range = ByteRange.Parse(Encoding.ASCII.GetBytes(field), length);
        Assert.That((range.IsWhole, range.Unsatisfiable, range.First, range.Last), Is.EqualTo((false, false, first, last)));
    }

    [TestCase("bytes=10-", 10)]
    [TestCase("bytes=10-20", 10)]
    [TestCase("bytes=-0", 10)]
    [TestCase("bytes=0-", 0)]
    [TestCase("bytes=-5", 0)]
    public void ARangeOutsideTheFileIsUnsatisfiable(string field, long length) =>
        Assert.That(ByteRange.Parse(Encoding.ASCII.GetBytes(field), length).Unsatisfiable, Is.True);

    [TestCase("bytes=0-1,3-4")]
    [TestCase("bytes=5-2")]
    [TestCase("bytes=a-2")]
    [TestCase("bytes=1-2x")]
    [TestCase("bytes=-")]
    [TestCase("bytes 0-1")]
    [TestCase("items=0-1")]
    [TestCase("bytes=9999999999999999999999-")] // too long a number: ignored, never an overflow
    public void WhatIsNotOneRangeIsTheWholeFile(string field) =>
        Assert.That(ByteRange.Parse(Encoding.ASCII.GetBytes(field), 10).IsWhole, Is.True);

    [Test]
    public void TheETagIsNginxsFormAndTheDateIsImfFixdate()
    {
        var etag = new byte[40];
        int length = Validators.FormatETag(0x5f1a2b3c, 0x1234, etag);
        Assert.That(Encoding.ASCII.GetString(etag, 0, length), Is.EqualTo("\"5f1a2b3c-1234\""));
        var date = new byte[29];
        Validators.FormatHttpDate(784111777, date);
        Assert.That(Encoding.ASCII.GetString(date), Is.EqualTo("Sun, 06 Nov 1994 08:49:37 GMT")); // RFC 9110 §5.6.7's example
        Assert.That(Validators.TryParseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT"u8, out long seconds), Is.True);
        Assert.That(seconds, Is.EqualTo(784111777));
        Assert.That(Validators.TryParseHttpDate("Sunday, 06-Nov-94 08:49:37 GMT"u8, out _), Is.False, "obsolete forms are ignored");
        Assert.That(Validators.TryParseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT trailing"u8, out _), Is.False);
    }

    [TestCase("\"t\"", "", true)]
    [TestCase("W/\"t\"", "", true)]
    [TestCase("\"a\", \"t\"", "", true)]
    [TestCase("*", "", true)]
    [TestCase("\"a\"", "Sun, 06 Nov 1994 08:49:37 GMT", false)] // If-None-Match present: If-Modified-Since is not looked at
    [TestCase("", "Sun, 06 Nov 1994 08:49:37 GMT", true)]
    [TestCase("", "Sun, 06 Nov 1994 08:49:36 GMT", false)]
    [TestCase("", "not a date", false)]
    [TestCase("", "", false)]
    public void NotModifiedFollowsTheOrderOfRfc9110(string ifNoneMatch, string ifModifiedSince, bool notModified) =>
        Assert.That(Validators.NotModified(Encoding.ASCII.GetBytes(ifNoneMatch), Encoding.ASCII.GetBytes(ifModifiedSince), "\"t\""u8, 784111777),
            Is.EqualTo(notModified));

    [TestCase("\"t\"", true)]
    [TestCase("W/\"t\"", false)] // If-Range compares strongly
    [TestCase("\"u\"", false)]
    [TestCase("Sun, 06 Nov 1994 08:49:37 GMT", true)]
    [TestCase("Sun, 06 Nov 1994 08:49:38 GMT", false)] // a date must equal Last-Modified
    public void IfRangeHoldsOnlyForTheCurrentFile(string ifRange, bool holds) =>
        Assert.That(Validators.IfRangeHolds(Encoding.ASCII.GetBytes(ifRange), "\"t\""u8, 784111777), Is.EqualTo(holds));

    [Test]
    public void TheParserFindsTheFieldsTheStaticServerReads()
    {
        var data = Encoding.ASCII.GetBytes(
            "GET /f HTTP/1.1\r\nHost: x\r\nrange:  bytes=1-2 \r\nIf-None-Match:\t\"a\"\r\nIF-MODIFIED-SINCE: d1\r\nIf-Range: \"b\"\r\nExpect: 100-Continue\r\n\r\n");
        var head = new HttpRequestHead();
        Assert.That(HttpRequestParser.Parse(data, head), Is.EqualTo(ParseStatus.Complete));
        Assert.That(Encoding.ASCII.GetString(head.Range.In(data)), Is.EqualTo("bytes=1-2"));
        Assert.That(Encoding.ASCII.GetString(head.IfNoneMatch.In(data)), Is.EqualTo("\"a\""));
        Assert.That(Encoding.ASCII.GetString(head.IfModifiedSince.In(data)), Is.EqualTo("d1"));
        Assert.That(Encoding.ASCII.GetString(head.IfRange.In(data)), Is.EqualTo("\"b\""));
        Assert.That(head.ExpectsContinue, Is.True);
        Assert.That(Encoding.ASCII.GetString(data, head.MethodStart, head.MethodLength), Is.EqualTo("GET"));

        Assert.That(HttpRequestParser.Parse("GET /f HTTP/1.1\r\nHost: x\r\n\r\n"u8, head), Is.EqualTo(ParseStatus.Complete));
        Assert.That((head.Range.Present, head.IfNoneMatch.Present, head.IfModifiedSince.Present, head.IfRange.Present, head.ExpectsContinue),
            Is.EqualTo((false, false, false, false, false)), "reset between requests");
    }
}
